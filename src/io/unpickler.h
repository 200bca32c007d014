// A restricted reader for the pickles inside torch.save files (private to pytorch_import.cpp).
//
// It understands the opcodes that Python's pickle (protocols 2-5) and libtorch's own pickler emit
// for a state_dict, and nothing that can run code: GLOBAL/STACK_GLOBAL are checked against a short
// allow-list (OrderedDict, the tensor rebuild functions, the typed storage classes and
// torch.jit._pickle.restore_type_tag), and REDUCE only "calls" those. Tensors are not built here:
// a tensor is a description (storage key, dtype, offset, sizes, strides) already checked to lie
// inside its storage's declared size; pytorch_import.cpp supplies the bytes.
//
// Values live in an arena owned by the Unpickler, so cyclic or deeply nested pickles cost neither
// leaks nor recursion. To allow another global, add it to the allow-list in unpickler.cpp and
// give REDUCE a rule for it.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace pix2pix::detail {

/// A malformed, truncated or disallowed pickle; the caller prefixes the file path.
class PickleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A storage named by a persistent id ('storage', torch.<T>Storage, key, location, numel
/// [, view_metadata]).
struct PickleStorage {
  std::string key;                                 ///< zip: record data/<key>; legacy: storage key
  c10::ScalarType dtype = c10::ScalarType::Float;  ///< element type from the storage class
  int64_t numel = 0;        ///< elements of the whole (root) storage, as declared
  int64_t view_offset = 0;  ///< legacy storage views: first element of the view in the root
  int64_t view_numel = 0;   ///< elements visible through this reference (numel unless a view)
};

/// A tensor from torch._utils._rebuild_tensor[_v2]: a strided view of one storage.
struct PickleTensor {
  size_t storage = 0;          ///< index into Unpickler::storages()
  int64_t storage_offset = 0;  ///< in elements, relative to the (view of the) storage
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
  bool requires_grad = false;
};

/// One unpickled object.
struct PickleValue {
  /// What the value is; kGlobal is an allow-listed "module.name".
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kBigInt,
    kFloat,
    kString,
    kBytes,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor,
  };
  Kind kind = Kind::kNone;
  int64_t integer = 0;  ///< kBool, kInt
  double real = 0.0;    ///< kFloat
  std::string text;     ///< kString, kBytes, kGlobal ("module.name"), kBigInt (little-endian bytes)
  std::vector<PickleValue*> items;  ///< kTuple, kList; kDict as key, value, key, value...
  size_t index = 0;                 ///< kStorage, kTensor: index into the Unpickler's lists
};

/// Human-readable name of a value kind, for error messages ("int", "tuple", ...).
const char* kind_name(PickleValue::Kind kind);

/// Reads one or more consecutive pickles from a byte buffer it does not own.
class Unpickler {
 public:
  /// `data` must outlive the Unpickler and every value it returns.
  Unpickler(const char* data, size_t size);

  /// Parses the pickle starting at `offset` up to and including its STOP opcode and returns the
  /// result; `*end` receives the offset just past STOP. Each call starts with an empty memo, as
  /// Python's pickle.load does. Throws PickleError.
  const PickleValue& load(size_t offset, size_t* end);

  /// Storages referenced so far, in the order their persistent ids appeared.
  const std::deque<PickleStorage>& storages() const { return storages_; }
  /// Tensors rebuilt so far.
  const std::deque<PickleTensor>& tensors() const { return tensors_; }

 private:
  PickleValue* make(PickleValue::Kind kind);
  PickleValue* pop();
  std::vector<PickleValue*> pop_to_mark();
  PickleValue* top();
  void push(PickleValue* value);
  const char* take(size_t n);
  uint64_t take_uint(size_t n);
  std::string take_line();
  void memo_put(uint64_t index);
  PickleValue* memo_get(uint64_t index);
  void push_global(const std::string& module, const std::string& name);
  PickleValue* reduce(const PickleValue& callable, const PickleValue& args);
  PickleValue* persistent_load(const PickleValue& pid);
  PickleValue* rebuild_tensor(const PickleValue& args, bool v2);

  const char* data_;
  size_t size_;
  size_t pos_ = 0;
  std::deque<PickleValue> values_;
  std::deque<PickleStorage> storages_;
  std::deque<PickleTensor> tensors_;
  std::vector<PickleValue*> stack_;
  std::vector<size_t> marks_;  // stack sizes at each MARK
  std::unordered_map<uint64_t, PickleValue*> memo_;
};

/// `text` for an error message: bytes outside printable ASCII become '?', long text is cut.
std::string printable(const std::string& text);

/// Sets `*dtype` from a storage class name ("torch.FloatStorage"); false for other names.
bool storage_dtype(const std::string& global_name, c10::ScalarType* dtype);

/// The storage class name for a dtype ("FloatStorage", without "torch."); nullptr if none.
const char* storage_class(c10::ScalarType dtype);

}  // namespace pix2pix::detail
