#include "option_flags.h"

#include <algorithm>

namespace pix2pix::cli {

std::string option_flag(const detail::OptionField& field) {
  std::string name = field.key;
  std::replace(name.begin(), name.end(), '_', '-');
  return (field.negated_flag ? "--no-" : "--") + name;
}

CLI::Option* add_switch(CLI::App* app, const std::string& key, bool& value) {
  const detail::OptionField& field = detail::option_field(key);
  if (!field.negated_flag) return app->add_flag(option_flag(field), value, field.doc);
  bool* target = &value;
  return app->add_flag_callback(
      option_flag(field), [target] { *target = false; }, field.doc);
}

}  // namespace pix2pix::cli
