#include "config_file.h"

#include <fstream>

#include "pix2pix/error.h"

namespace pix2pix::cli {

void add_config_option(CLI::App* command) {
  for (CLI::Option* option : command->get_options())
    if (option->get_expected_max() == 1)
      option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // Declared for --help and for the parser; expand_config_file() has consumed it by then.
  std::string unused;
  command->add_option("--config", unused,
                      "TOML file of options (key = value, keys as the flags without '--'); "
                      "flags on the command line override it");
}

namespace {

// The subcommand named by args[index], or null.
const CLI::App* find_subcommand(const CLI::App& app, const std::string& name) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->check_name(name)) return sub;
  return nullptr;
}

const CLI::Option* find_option(const CLI::App& command, std::string key) {
  if (const CLI::Option* option = command.get_option_no_throw("--" + key)) return option;
  for (char& c : key)
    if (c == '_') c = '-';
  return command.get_option_no_throw("--" + key);
}

std::vector<std::string> config_args(const CLI::App& command, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path, "cannot read the config file");
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_config(in);
  } catch (const CLI::Error& e) {
    throw Error(path, std::string("not a valid TOML config: ") + e.what());
  }
  std::vector<std::string> args;
  for (const CLI::ConfigItem& item : items) {
    // CLI11 reports each [section] header as an item named "++" / "--".
    if (item.name == "++" || item.name == "--") continue;
    if (!item.parents.empty())
      throw Error(path, "sections are not supported ([" + item.parents.front() +
                            "]); write plain key = value lines");
    const CLI::Option* option = find_option(command, item.name);
    if (option == nullptr || option->get_name() == "--config" || option->get_name() == "--help")
      throw Error(path, "unknown option '" + item.name + "' for '" + command.get_name() + "'");
    if (option->get_expected_max() == 0) {  // a flag
      const std::string value = item.inputs.empty() ? "true" : item.inputs.front();
      if (value == "true" || value == "1") {
        args.push_back(option->get_name());
      } else if (value != "false" && value != "0") {
        throw Error(path, "'" + item.name + "' is a flag: use true or false");
      }
      continue;
    }
    if (item.inputs.empty()) throw Error(path, "'" + item.name + "' has no value");
    args.push_back(option->get_name());
    args.insert(args.end(), item.inputs.begin(), item.inputs.end());
  }
  return args;
}

}  // namespace

std::vector<std::string> expand_config_file(const CLI::App& app, std::vector<std::string> args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const CLI::App* command = find_subcommand(app, args[i]);
    if (command == nullptr) continue;
    if (command->get_option_no_throw("--config") == nullptr) return args;
    for (size_t j = i + 1; j < args.size(); ++j) {
      std::string path;
      size_t consumed = 0;
      if (args[j] == "--config" && j + 1 < args.size()) {
        path = args[j + 1];
        consumed = 2;
      } else if (args[j].rfind("--config=", 0) == 0) {
        path = args[j].substr(9);
        consumed = 1;
      } else {
        continue;
      }
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(j),
                 args.begin() + static_cast<std::ptrdiff_t>(j + consumed));
      const std::vector<std::string> inserted = config_args(*command, path);
      args.insert(args.begin() + static_cast<std::ptrdiff_t>(i + 1), inserted.begin(),
                  inserted.end());
      return args;
    }
    return args;
  }
  return args;
}

}  // namespace pix2pix::cli
