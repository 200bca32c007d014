// The project's exception type. The library throws; only the CLI turns an Error into a message
// and an exit status. Messages name the file or option field first and then the problem, so that
// the CLI can print them as one line: `error: <what>` (with the flag in place of the field).
#pragma once

#include <stdexcept>
#include <string>

namespace pix2pix {

/// What kind of failure an Error is; the CLI maps it to the exit status.
enum class ErrorKind {
  kInput,    ///< bad input: a file, a flag or an option value (exit status 2)
  kRuntime,  ///< the input was fine but the work failed (I/O, numerics; exit status 1)
};

/// Thrown by the library for every failure a user can cause or see.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ErrorKind kind = ErrorKind::kInput)
      : std::runtime_error(message), kind_(kind) {}
  /// `subject: reason`, e.g. `data/x.png: truncated PNG data`.
  Error(const std::string& subject, const std::string& reason, ErrorKind kind = ErrorKind::kInput)
      : std::runtime_error(subject + ": " + reason), kind_(kind) {}

  /// A bad option value: `field` names the option as the library's options structs and
  /// options.json do (e.g. "crop_size"); the message is `field: reason`. The CLI shows the
  /// command's flag instead (--crop-size).
  static Error option(const std::string& field, const std::string& reason) {
    Error error(field, reason);
    error.field_ = field;
    return error;
  }

  ErrorKind kind() const { return kind_; }
  /// The option an Error::option names ("input_nc/output_nc" for two); empty otherwise.
  const std::string& field() const { return field_; }

 private:
  ErrorKind kind_;
  std::string field_;
};

}  // namespace pix2pix
