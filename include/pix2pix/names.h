// The names of the option enums (Direction, Norm, GanMode, ...), spelled once: parse_<enum>()
// reads them, to_string() writes them and the CLI offers them. Each enum's header declares its
// specialisation of names<E>() beside the enum; its .cpp defines it.
#pragma once

#include <string>
#include <vector>

namespace pix2pix {

/// The names an option enum takes on the command line and in options.json, in the enum's
/// declaration order: names<E>()[static_cast<size_t>(value)] names `value`. Some parsers also
/// take a few other words (parse_precision: "auto"); their headers say which.
template <typename E>
const std::vector<std::string>& names();

}  // namespace pix2pix
