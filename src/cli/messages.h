// The library's messages in the CLI's words: the library names its option fields (Error::option,
// and `field` in backquotes inside a text); the CLI shows the running command's flags instead.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "pix2pix/error.h"

namespace pix2pix::cli {

/// The tool and the subcommands the command line chose, outermost first ("pix2pix", "data",
/// "check"); `app` is any command of the tree.
std::vector<const CLI::App*> parsed_chain(const CLI::App& app);

/// The flag of the command that ran (or of its parents) that sets the library's option `field`:
/// the field with dashes, any case (crop_size: --crop-size, init_D: --init-D), or an alias;
/// empty when the command has none.
std::string flag_for(const std::string& field, const CLI::App& app);

/// `text` with each backquoted `field` the running command has a flag for replaced by the flag,
/// and the library calls it names (`check_dataset(ROOT)`) by the command that does the same.
std::string with_flags(const std::string& text, const CLI::App& app);

/// An Error's first line, its leading field (Error::option) and the fields in its text as flags.
std::string message_of(const Error& error, const CLI::App& app);

}  // namespace pix2pix::cli
