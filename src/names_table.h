// Helpers for the option enums' parse_<enum>() and to_string() over names<E>() (names.h);
// private to the library.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "pix2pix/error.h"
#include "pix2pix/names.h"

namespace pix2pix::detail {

/// "a", "a or b", "a, b or c" (`last` between the last two).
inline std::string list_names(const std::vector<std::string>& names,
                              const std::string& last = " or ") {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i)
    text += (i == 0 ? "" : i + 1 == names.size() ? last : ", ") + names[i];
  return text;
}

/// The name of `value`: names<E>()[value], "?" for a value outside the enum.
template <typename E>
std::string name_of(E value) {
  const std::vector<std::string>& all = names<E>();
  const auto index = static_cast<size_t>(value);
  return index < all.size() ? all[index] : "?";
}

/// The value `name` names, or nullopt.
template <typename E>
std::optional<E> find_name(const std::string& name) {
  const std::vector<std::string>& all = names<E>();
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i] == name) return static_cast<E>(i);
  return std::nullopt;
}

/// The value `name` names; otherwise throws Error::option(field, "unknown <what> '<name>'
/// (expected a, b or c)").
template <typename E>
E parse_name(const std::string& name, const char* field, const char* what) {
  if (const std::optional<E> value = find_name<E>(name)) return *value;
  throw Error::option(field, std::string("unknown ") + what + " '" + name + "' (expected " +
                                 list_names(names<E>()) + ")");
}

}  // namespace pix2pix::detail
