// The restricted unpickler; see unpickler.h. Opcode values follow Python's Lib/pickletools.py.
#include "io/unpickler.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

namespace pix2pix::detail {
namespace {

using Kind = PickleValue::Kind;

// Bounds that no real state_dict pickle comes near but that keep a hostile one from using
// gigabytes of memory: every value costs ~90 bytes, every memo entry ~40.
constexpr size_t kMaxValues = size_t{1} << 21;
constexpr size_t kMaxMemo = size_t{1} << 21;
constexpr size_t kMaxDims = 64;
constexpr size_t kMaxGlobalLine = 256;
constexpr size_t kMaxLongBytes = 64;

// Opcodes (Lib/pickletools.py).
enum Opcode : unsigned char {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kBinFloat = 'G',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kBinString = 'T',
  kShortBinString = 'U',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kList = 'l',
  kEmptyList = ']',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kProto = 0x80,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
};

// The only globals a state_dict needs. Anything else (os.system, builtins.eval, a user class)
// is refused when it is named, before anything could call it.
bool is_allowed_global(const std::string& name) {
  static const char* const kAllowed[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "torch.jit._pickle.restore_type_tag",
  };
  for (const char* allowed : kAllowed)
    if (name == allowed) return true;
  c10::ScalarType dtype;
  return storage_dtype(name, &dtype);
}

std::string describe(const PickleValue& value) {
  if (value.kind == Kind::kGlobal) return "global '" + printable(value.text) + "'";
  return kind_name(value.kind);
}

int64_t as_int(const PickleValue& value, const char* what) {
  if (value.kind != Kind::kInt)
    throw PickleError(std::string(what) + " is " + describe(value) + ", not an int");
  return value.integer;
}

int64_t as_count(const PickleValue& value, const char* what) {
  int64_t n = as_int(value, what);
  if (n < 0) throw PickleError(std::string(what) + " is negative (" + std::to_string(n) + ")");
  return n;
}

const std::vector<PickleValue*>& as_tuple(const PickleValue& value, const char* what) {
  if (value.kind != Kind::kTuple && value.kind != Kind::kList)
    throw PickleError(std::string(what) + " is " + describe(value) + ", not a tuple");
  return value.items;
}

const std::string& as_string(const PickleValue& value, const char* what) {
  if (value.kind != Kind::kString && value.kind != Kind::kBytes)
    throw PickleError(std::string(what) + " is " + describe(value) + ", not a string");
  return value.text;
}

std::vector<int64_t> as_int_tuple(const PickleValue& value, const char* what) {
  const auto& items = as_tuple(value, what);
  if (items.size() > kMaxDims)
    throw PickleError(std::string(what) + " has " + std::to_string(items.size()) + " dimensions");
  std::vector<int64_t> out;
  out.reserve(items.size());
  for (const PickleValue* item : items) out.push_back(as_count(*item, what));
  return out;
}

}  // namespace

std::string printable(const std::string& text) {
  constexpr size_t kMaxShown = 100;
  std::string out;
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i)
    out += (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
  if (text.size() > kMaxShown) out += "...";
  return out;
}

const char* kind_name(PickleValue::Kind kind) {
  switch (kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
    case Kind::kBigInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kTuple:
      return "tuple";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kGlobal:
      return "global";
    case Kind::kStorage:
      return "storage";
    case Kind::kTensor:
      return "tensor";
  }
  return "?";
}

namespace {

// The typed storage classes torch.save names (module "torch"), one per dtype.
constexpr std::pair<const char*, c10::ScalarType> kStorageClasses[] = {
    {"FloatStorage", c10::ScalarType::Float},
    {"DoubleStorage", c10::ScalarType::Double},
    {"HalfStorage", c10::ScalarType::Half},
    {"BFloat16Storage", c10::ScalarType::BFloat16},
    {"LongStorage", c10::ScalarType::Long},
    {"IntStorage", c10::ScalarType::Int},
    {"ShortStorage", c10::ScalarType::Short},
    {"CharStorage", c10::ScalarType::Char},
    {"ByteStorage", c10::ScalarType::Byte},
    {"BoolStorage", c10::ScalarType::Bool},
    {"ComplexFloatStorage", c10::ScalarType::ComplexFloat},
    {"ComplexDoubleStorage", c10::ScalarType::ComplexDouble},
};

}  // namespace

bool storage_dtype(const std::string& global_name, c10::ScalarType* dtype) {
  if (global_name.compare(0, 6, "torch.") != 0) return false;
  for (const auto& [name, type] : kStorageClasses) {
    if (global_name.compare(6, std::string::npos, name) == 0) {
      *dtype = type;
      return true;
    }
  }
  return false;
}

const char* storage_class(c10::ScalarType dtype) {
  for (const auto& [name, type] : kStorageClasses)
    if (type == dtype) return name;
  return nullptr;
}

Unpickler::Unpickler(const char* data, size_t size) : data_(data), size_(size) {}

PickleValue* Unpickler::make(PickleValue::Kind kind) {
  if (values_.size() >= kMaxValues)
    throw PickleError("pickle has more than " + std::to_string(kMaxValues) +
                      " objects (not a state_dict)");
  values_.emplace_back();
  values_.back().kind = kind;
  return &values_.back();
}

void Unpickler::push(PickleValue* value) { stack_.push_back(value); }

PickleValue* Unpickler::pop() {
  size_t base = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= base) throw PickleError("corrupt pickle: stack underflow");
  PickleValue* value = stack_.back();
  stack_.pop_back();
  return value;
}

PickleValue* Unpickler::top() {
  size_t base = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= base) throw PickleError("corrupt pickle: stack underflow");
  return stack_.back();
}

std::vector<PickleValue*> Unpickler::pop_to_mark() {
  if (marks_.empty()) throw PickleError("corrupt pickle: MARK missing");
  size_t base = marks_.back();
  marks_.pop_back();
  std::vector<PickleValue*> items(stack_.begin() + static_cast<std::ptrdiff_t>(base), stack_.end());
  stack_.resize(base);
  return items;
}

const char* Unpickler::take(size_t n) {
  if (n > size_ - pos_) throw PickleError("truncated pickle");
  const char* p = data_ + pos_;
  pos_ += n;
  return p;
}

uint64_t Unpickler::take_uint(size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(take(n));
  uint64_t value = 0;
  for (size_t i = 0; i < n; ++i) value |= uint64_t{p[i]} << (8 * i);
  return value;
}

std::string Unpickler::take_line() {
  size_t limit = std::min(size_ - pos_, kMaxGlobalLine);
  const void* newline = std::memchr(data_ + pos_, '\n', limit);
  if (newline == nullptr) throw PickleError("corrupt pickle: GLOBAL name not terminated");
  size_t n = static_cast<size_t>(static_cast<const char*>(newline) - (data_ + pos_));
  std::string line(data_ + pos_, n);
  pos_ += n + 1;
  return line;
}

void Unpickler::memo_put(uint64_t index) {
  if (memo_.size() >= kMaxMemo && memo_.count(index) == 0)
    throw PickleError("pickle memo has more than " + std::to_string(kMaxMemo) + " entries");
  memo_[index] = top();
}

PickleValue* Unpickler::memo_get(uint64_t index) {
  auto it = memo_.find(index);
  if (it == memo_.end())
    throw PickleError("corrupt pickle: memo entry " + std::to_string(index) + " is missing");
  return it->second;
}

void Unpickler::push_global(const std::string& module, const std::string& name) {
  std::string full = module + "." + name;
  if (!is_allowed_global(full))
    throw PickleError("refuses to load: the pickle names global '" + printable(full) +
                      "', which a state_dict of tensors never needs (it could run code)");
  PickleValue* value = make(Kind::kGlobal);
  value->text = std::move(full);
  push(value);
}

PickleValue* Unpickler::persistent_load(const PickleValue& pid) {
  // ('storage', torch.<T>Storage, key, location, numel) in zip files; legacy files add
  // view_metadata: None or (view_key, offset, view_numel).
  const auto& items = as_tuple(pid, "persistent id");
  if (items.size() != 5 && items.size() != 6)
    throw PickleError("unsupported persistent id with " + std::to_string(items.size()) + " fields");
  if (as_string(*items[0], "persistent id tag") != "storage")
    throw PickleError("unsupported persistent id '" + printable(items[0]->text) + "'");
  PickleStorage storage;
  if (items[1]->kind != Kind::kGlobal || !storage_dtype(items[1]->text, &storage.dtype))
    throw PickleError("persistent id names " + describe(*items[1]) + ", not a storage class");
  if (items[2]->kind == Kind::kInt)
    storage.key = std::to_string(items[2]->integer);
  else
    storage.key = as_string(*items[2], "storage key");
  as_string(*items[3], "storage location");
  storage.numel = as_count(*items[4], "storage size");
  const auto element_size = static_cast<int64_t>(c10::elementSize(storage.dtype));
  if (storage.numel > std::numeric_limits<int64_t>::max() / element_size)
    throw PickleError("storage '" + printable(storage.key) + "' declares an impossible size (" +
                      std::to_string(storage.numel) + " elements)");
  storage.view_numel = storage.numel;
  if (items.size() == 6 && items[5]->kind != Kind::kNone) {
    const auto& view = as_tuple(*items[5], "storage view");
    if (view.size() != 3) throw PickleError("storage view metadata has the wrong length");
    storage.view_offset = as_count(*view[1], "storage view offset");
    storage.view_numel = as_count(*view[2], "storage view size");
    if (storage.view_offset > storage.numel ||
        storage.view_numel > storage.numel - storage.view_offset)
      throw PickleError("storage view of '" + printable(storage.key) +
                        "' lies outside its storage");
  }
  storages_.push_back(std::move(storage));
  PickleValue* value = make(Kind::kStorage);
  value->index = storages_.size() - 1;
  return value;
}

PickleValue* Unpickler::rebuild_tensor(const PickleValue& args, bool v2) {
  // v1: (storage, offset, size, stride); v2 adds (requires_grad, backward_hooks[, metadata]).
  const auto& items = as_tuple(args, "tensor arguments");
  if (v2 ? (items.size() != 6 && items.size() != 7) : items.size() != 4)
    throw PickleError("tensor rebuild has " + std::to_string(items.size()) + " arguments");
  if (items[0]->kind != Kind::kStorage)
    throw PickleError("tensor data is " + describe(*items[0]) + ", not a storage");
  PickleTensor tensor;
  tensor.storage = items[0]->index;
  tensor.storage_offset = as_count(*items[1], "tensor storage offset");
  tensor.sizes = as_int_tuple(*items[2], "tensor size");
  tensor.strides = as_int_tuple(*items[3], "tensor stride");
  if (tensor.sizes.size() != tensor.strides.size())
    throw PickleError("tensor size and stride have different lengths");
  if (v2) {
    if (items[4]->kind != Kind::kBool) throw PickleError("tensor requires_grad is not a bool");
    tensor.requires_grad = items[4]->integer != 0;
  }
  // The elements this view touches must lie inside the declared storage; 128-bit arithmetic
  // because sizes and strides come from the file.
  const PickleStorage& storage = storages_[tensor.storage];
  __int128 last = tensor.storage_offset;
  __int128 numel = 1;
  bool empty = false;
  for (size_t d = 0; d < tensor.sizes.size(); ++d) {
    if (tensor.sizes[d] == 0) empty = true;
    numel = std::min<__int128>(numel * tensor.sizes[d], __int128{1} << 64);
    if (tensor.sizes[d] > 0) last += static_cast<__int128>(tensor.sizes[d] - 1) * tensor.strides[d];
  }
  if (numel > std::numeric_limits<int64_t>::max())
    throw PickleError("tensor of storage '" + printable(storage.key) + "' has too many elements");
  if (tensor.storage_offset > storage.view_numel || (!empty && last >= storage.view_numel))
    throw PickleError("tensor of storage '" + printable(storage.key) +
                      "' reaches past the end of its " + std::to_string(storage.view_numel) +
                      "-element storage");
  tensors_.push_back(std::move(tensor));
  PickleValue* value = make(Kind::kTensor);
  value->index = tensors_.size() - 1;
  return value;
}

PickleValue* Unpickler::reduce(const PickleValue& callable, const PickleValue& args) {
  if (callable.kind != Kind::kGlobal) throw PickleError("pickle calls " + describe(callable));
  const std::string& name = callable.text;
  if (name == "collections.OrderedDict") {
    if (!as_tuple(args, "OrderedDict arguments").empty())
      throw PickleError("OrderedDict with constructor arguments is not supported");
    return make(Kind::kDict);
  }
  if (name == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args, true);
  if (name == "torch._utils._rebuild_tensor") return rebuild_tensor(args, false);
  if (name == "torch._utils._rebuild_parameter") {
    // (data, requires_grad, backward_hooks): an nn.Parameter saved with keep_vars=True.
    const auto& items = as_tuple(args, "parameter arguments");
    if (items.size() != 3 || items[0]->kind != Kind::kTensor || items[1]->kind != Kind::kBool)
      throw PickleError("malformed nn.Parameter");
    tensors_[items[0]->index].requires_grad = items[1]->integer != 0;
    return items[0];
  }
  if (name == "torch.jit._pickle.restore_type_tag") {
    // libtorch's pickler wraps typed containers: restore_type_tag(obj, "Dict[str, Tensor]").
    const auto& items = as_tuple(args, "restore_type_tag arguments");
    if (items.size() != 2) throw PickleError("malformed restore_type_tag");
    return items[0];
  }
  throw PickleError("pickle calls '" + name + "', which is not a function");
}

const PickleValue& Unpickler::load(size_t offset, size_t* end) {
  if (offset > size_) throw PickleError("truncated pickle");
  pos_ = offset;
  stack_.clear();
  marks_.clear();
  memo_.clear();
  while (true) {
    const size_t opcode_pos = pos_;
    const auto opcode = static_cast<unsigned char>(*take(1));
    switch (opcode) {
      case kProto: {
        auto version = take_uint(1);
        if (version > 5)
          throw PickleError("unsupported pickle protocol " + std::to_string(version));
        break;
      }
      case kFrame:
        take(8);  // a length hint for buffered readers; the opcodes follow inline
        break;
      case kStop: {
        const PickleValue* result = pop();
        *end = pos_;
        return *result;
      }
      case kMark:
        marks_.push_back(stack_.size());
        break;
      case kPop:
        if (stack_.size() > (marks_.empty() ? 0 : marks_.back()))
          stack_.pop_back();
        else
          pop_to_mark();
        break;
      case kPopMark:
        pop_to_mark();
        break;
      case kDup:
        push(top());
        break;
      case kNone:
        push(make(Kind::kNone));
        break;
      case kNewTrue:
      case kNewFalse: {
        PickleValue* value = make(Kind::kBool);
        value->integer = opcode == kNewTrue;
        push(value);
        break;
      }
      case kBinInt1:
      case kBinInt2:
      case kBinInt: {
        PickleValue* value = make(Kind::kInt);
        if (opcode == kBinInt)
          value->integer = static_cast<int32_t>(static_cast<uint32_t>(take_uint(4)));
        else
          value->integer = static_cast<int64_t>(take_uint(opcode == kBinInt1 ? 1 : 2));
        push(value);
        break;
      }
      case kLong1:
      case kLong4: {
        uint64_t n = take_uint(opcode == kLong1 ? 1 : 4);
        if (n > kMaxLongBytes)
          throw PickleError("pickle holds an integer of " + std::to_string(n) + " bytes");
        const auto* bytes = reinterpret_cast<const unsigned char*>(take(n));
        PickleValue* value;
        if (n <= 8) {
          // Little-endian two's complement, sign-extended from the top byte.
          uint64_t bits = 0;
          for (size_t i = 0; i < n; ++i) bits |= uint64_t{bytes[i]} << (8 * i);
          if (n > 0 && n < 8 && (bytes[n - 1] & 0x80)) bits |= ~uint64_t{0} << (8 * n);
          value = make(Kind::kInt);
          value->integer = static_cast<int64_t>(bits);
        } else {
          value = make(Kind::kBigInt);
          value->text.assign(reinterpret_cast<const char*>(bytes), n);
        }
        push(value);
        break;
      }
      case kBinFloat: {
        // Big-endian IEEE double.
        const auto* p = reinterpret_cast<const unsigned char*>(take(8));
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
        PickleValue* value = make(Kind::kFloat);
        std::memcpy(&value->real, &bits, sizeof bits);
        push(value);
        break;
      }
      case kShortBinUnicode:
      case kBinUnicode:
      case kBinUnicode8:
      case kShortBinString:
      case kBinString:
      case kShortBinBytes:
      case kBinBytes:
      case kBinBytes8: {
        size_t width =
            (opcode == kShortBinUnicode || opcode == kShortBinString || opcode == kShortBinBytes)
                ? 1
            : (opcode == kBinUnicode8 || opcode == kBinBytes8) ? 8
                                                               : 4;
        uint64_t n = take_uint(width);
        if (n > size_ - pos_) throw PickleError("truncated pickle (a string runs past the end)");
        bool is_bytes = opcode == kShortBinBytes || opcode == kBinBytes || opcode == kBinBytes8;
        PickleValue* value = make(is_bytes ? Kind::kBytes : Kind::kString);
        value->text.assign(take(n), n);
        push(value);
        break;
      }
      case kEmptyTuple:
        push(make(Kind::kTuple));
        break;
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        size_t n = opcode - kTuple1 + 1;
        PickleValue* value = make(Kind::kTuple);
        value->items.resize(n);
        for (size_t i = n; i-- > 0;) value->items[i] = pop();
        push(value);
        break;
      }
      case kTuple:
      case kList: {
        auto items = pop_to_mark();
        PickleValue* value = make(opcode == kTuple ? Kind::kTuple : Kind::kList);
        value->items = std::move(items);
        push(value);
        break;
      }
      case kEmptyList:
        push(make(Kind::kList));
        break;
      case kEmptyDict:
        push(make(Kind::kDict));
        break;
      case kDict: {
        auto items = pop_to_mark();
        if (items.size() % 2 != 0) throw PickleError("corrupt pickle: odd DICT item count");
        PickleValue* value = make(Kind::kDict);
        value->items = std::move(items);
        push(value);
        break;
      }
      case kAppend: {
        PickleValue* item = pop();
        PickleValue* list = top();
        if (list->kind != Kind::kList)
          throw PickleError("corrupt pickle: APPEND to " + describe(*list));
        list->items.push_back(item);
        break;
      }
      case kAppends: {
        auto items = pop_to_mark();
        PickleValue* list = top();
        if (list->kind != Kind::kList)
          throw PickleError("corrupt pickle: APPENDS to " + describe(*list));
        list->items.insert(list->items.end(), items.begin(), items.end());
        break;
      }
      case kSetItem: {
        PickleValue* value = pop();
        PickleValue* key = pop();
        PickleValue* dict = top();
        if (dict->kind != Kind::kDict)
          throw PickleError("corrupt pickle: SETITEM on " + describe(*dict));
        dict->items.push_back(key);
        dict->items.push_back(value);
        break;
      }
      case kSetItems: {
        auto items = pop_to_mark();
        if (items.size() % 2 != 0) throw PickleError("corrupt pickle: odd SETITEMS item count");
        PickleValue* dict = top();
        if (dict->kind != Kind::kDict)
          throw PickleError("corrupt pickle: SETITEMS on " + describe(*dict));
        dict->items.insert(dict->items.end(), items.begin(), items.end());
        break;
      }
      case kBinPut:
        memo_put(take_uint(1));
        break;
      case kLongBinPut:
        memo_put(take_uint(4));
        break;
      case kMemoize:
        memo_put(memo_.size());
        break;
      case kBinGet:
        push(memo_get(take_uint(1)));
        break;
      case kLongBinGet:
        push(memo_get(take_uint(4)));
        break;
      case kGlobal: {
        std::string module = take_line();
        std::string name = take_line();
        push_global(module, name);
        break;
      }
      case kStackGlobal: {
        PickleValue* name = pop();
        PickleValue* module = pop();
        push_global(as_string(*module, "global module"), as_string(*name, "global name"));
        break;
      }
      case kBinPersId:
        push(persistent_load(*pop()));
        break;
      case kReduce: {
        PickleValue* args = pop();
        PickleValue* callable = pop();
        push(reduce(*callable, *args));
        break;
      }
      case kBuild: {
        // OrderedDict.__reduce__ sets the state_dict's `_metadata` (module versions) this way;
        // it only matters to Python's load_state_dict, so it is dropped.
        PickleValue* state = pop();
        (void)state;
        PickleValue* target = top();
        if (target->kind != Kind::kDict && target->kind != Kind::kTensor)
          throw PickleError("pickle sets the state of " + describe(*target));
        break;
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", opcode);
        throw PickleError("unsupported pickle opcode " + std::string(hex) + " at byte " +
                          std::to_string(opcode_pos));
      }
    }
  }
}

}  // namespace pix2pix::detail
