// Reading and writing PyTorch state_dict files; see include/pix2pix/io/pytorch_import.h.
//
// Zip files (torch >= 1.6) are a zip archive `<name>/data.pkl` + `<name>/data/<key>` (one record
// of raw little-endian bytes per storage) + `<name>/version`. Legacy files are a run of pickles:
// magic number, protocol version 1001, sys_info, the object, the list of storage keys; then per key
// an int64 element count and the raw bytes. In both, the object pickle refers to storages by
// persistent ids, which detail::Unpickler turns into PickleStorage descriptions; the bytes are
// attached here, after checking every declared size against what the file really holds.
#include "pix2pix/io/pytorch_import.h"

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/nn/module.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "io/atomic_file.h"
#include "io/unpickler.h"
#include "pix2pix/error.h"

namespace pix2pix {
namespace {

using detail::PickleError;
using detail::PickleStorage;
using detail::PickleTensor;
using detail::PickleValue;
using detail::printable;
using detail::Unpickler;
using Kind = PickleValue::Kind;

// ---------------------------------------------------------------------------------------------
// Zip directory scan. PyTorchStreamReader mallocs whatever size a record's header declares, so the
// central directory is checked here first: a stored record holds exactly its compressed bytes, a
// deflated one at most ~1032x them, and both must lie inside the file.

struct ZipEntry {
  uint64_t compressed = 0;
  uint64_t uncompressed = 0;
  uint32_t crc32 = 0;
};

uint64_t read_le(const unsigned char* p, int n) {
  uint64_t value = 0;
  for (int i = 0; i < n; ++i) value |= uint64_t{p[i]} << (8 * i);
  return value;
}

std::string read_at(std::ifstream& in, uint64_t offset, uint64_t n) {
  std::string buffer(n, '\0');
  in.clear();
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(buffer.data(), static_cast<std::streamsize>(n));
  if (static_cast<uint64_t>(in.gcount()) != n) throw PickleError("read error in zip archive");
  return buffer;
}

// `*first_name` receives the name of the central directory's first record.
std::unordered_map<std::string, ZipEntry> scan_zip(std::ifstream& in, uint64_t file_size,
                                                   std::string* first_name) {
  constexpr uint64_t kEocdSize = 22;
  const uint64_t tail_size = std::min<uint64_t>(file_size, kEocdSize + 65535);
  const uint64_t tail_offset = file_size - tail_size;
  const std::string tail = read_at(in, tail_offset, tail_size);
  const auto* t = reinterpret_cast<const unsigned char*>(tail.data());
  int64_t eocd = -1;
  for (int64_t i = static_cast<int64_t>(tail_size) - static_cast<int64_t>(kEocdSize); i >= 0; --i) {
    if (read_le(t + i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw PickleError("truncated or corrupt zip archive (no end of central directory)");
  uint64_t entries = read_le(t + eocd + 10, 2);
  uint64_t cd_size = read_le(t + eocd + 12, 4);
  uint64_t cd_offset = read_le(t + eocd + 16, 4);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    // Zip64: the locator sits just before the end record and points at the zip64 end record.
    const uint64_t locator = tail_offset + static_cast<uint64_t>(eocd);
    if (locator < 20) throw PickleError("corrupt zip64 archive");
    const std::string loc = read_at(in, locator - 20, 20);
    const auto* l = reinterpret_cast<const unsigned char*>(loc.data());
    if (read_le(l, 4) != 0x07064b50) throw PickleError("corrupt zip64 archive (no locator)");
    const uint64_t record = read_le(l + 8, 8);
    if (record > file_size || file_size - record < 56) throw PickleError("corrupt zip64 archive");
    const std::string rec = read_at(in, record, 56);
    const auto* r = reinterpret_cast<const unsigned char*>(rec.data());
    if (read_le(r, 4) != 0x06064b50) throw PickleError("corrupt zip64 archive (no end record)");
    entries = read_le(r + 32, 8);
    cd_size = read_le(r + 40, 8);
    cd_offset = read_le(r + 48, 8);
  }
  if (cd_offset > file_size || cd_size > file_size - cd_offset || entries > cd_size / 46)
    throw PickleError("truncated or corrupt zip archive (central directory out of range)");
  const std::string cd = read_at(in, cd_offset, cd_size);
  const auto* c = reinterpret_cast<const unsigned char*>(cd.data());
  std::unordered_map<std::string, ZipEntry> result;
  uint64_t pos = 0;
  for (uint64_t i = 0; i < entries; ++i) {
    if (cd_size - pos < 46 || read_le(c + pos, 4) != 0x02014b50)
      throw PickleError("corrupt zip archive (bad central directory entry)");
    const uint64_t method = read_le(c + pos + 10, 2);
    ZipEntry entry;
    entry.compressed = read_le(c + pos + 20, 4);
    entry.uncompressed = read_le(c + pos + 24, 4);
    entry.crc32 = static_cast<uint32_t>(read_le(c + pos + 16, 4));
    uint64_t local_offset = read_le(c + pos + 42, 4);
    const uint64_t name_len = read_le(c + pos + 28, 2);
    const uint64_t extra_len = read_le(c + pos + 30, 2);
    const uint64_t comment_len = read_le(c + pos + 32, 2);
    if (cd_size - pos - 46 < name_len + extra_len + comment_len)
      throw PickleError("corrupt zip archive (bad central directory entry)");
    std::string name(reinterpret_cast<const char*>(c + pos + 46), name_len);
    // Zip64 extra field: the 64-bit values of the fields that read 0xFFFFFFFF, in this order.
    const unsigned char* extra = c + pos + 46 + name_len;
    for (uint64_t e = 0; e + 4 <= extra_len;) {
      const uint64_t id = read_le(extra + e, 2);
      const uint64_t len = read_le(extra + e + 2, 2);
      if (e + 4 + len > extra_len) break;
      if (id == 0x0001) {
        uint64_t* fields[] = {&entry.uncompressed, &entry.compressed, &local_offset};
        uint64_t at = e + 4;
        for (uint64_t* field : fields) {
          if (*field != 0xFFFFFFFF) continue;
          if (at + 8 > e + 4 + len) throw PickleError("corrupt zip64 extra field");
          *field = read_le(extra + at, 8);
          at += 8;
        }
      }
      e += 4 + len;
    }
    if (method != 0 && method != 8)
      throw PickleError("zip record '" + printable(name) +
                        "' uses unsupported compression method " + std::to_string(method));
    if (local_offset > file_size || entry.compressed > file_size - local_offset ||
        (method == 0 && entry.uncompressed != entry.compressed) ||
        (method == 8 && entry.uncompressed / 1032 > entry.compressed + 1))
      throw PickleError("corrupt zip archive (record '" + printable(name) +
                        "' declares impossible sizes)");
    if (i == 0) *first_name = name;
    result[name] = entry;
    pos += 46 + name_len + extra_len + comment_len;
  }
  return result;
}

// PyTorchStreamReader does not verify checksums, and a flipped bit in a weight record would
// otherwise load silently.
void check_crc(const std::string& name, const at::DataPtr& data, size_t size, uint32_t expected) {
  const auto* bytes = static_cast<const Bytef*>(data.get());
  uLong crc = crc32_z(0L, Z_NULL, 0);
  if (size > 0) crc = crc32_z(crc, bytes, size);
  if (static_cast<uint32_t>(crc) != expected)
    throw PickleError("zip record '" + printable(name) + "' is corrupt (checksum mismatch)");
}

// ---------------------------------------------------------------------------------------------
// Turning the unpickled object into a StateDict.

// Checks that every reference to one storage key agrees on its type and size; returns, per key,
// the first reference and how many tensors use it.
struct StorageUse {
  const PickleStorage* storage = nullptr;
  int tensors = 0;
};

std::map<std::string, StorageUse> storage_uses(const Unpickler& unpickler) {
  std::map<std::string, StorageUse> uses;
  for (const PickleStorage& storage : unpickler.storages()) {
    StorageUse& use = uses[storage.key];
    if (use.storage == nullptr) {
      use.storage = &storage;
    } else if (use.storage->dtype != storage.dtype || use.storage->numel != storage.numel) {
      throw PickleError("storage '" + printable(storage.key) +
                        "' is declared twice with different types");
    }
  }
  for (const PickleTensor& tensor : unpickler.tensors())
    ++uses[unpickler.storages()[tensor.storage].key].tensors;
  return uses;
}

at::Tensor make_tensor(const PickleTensor& spec, const PickleStorage& storage,
                       const c10::Storage& bytes, bool shared) {
  at::Tensor tensor = at::empty({0}, at::TensorOptions().dtype(storage.dtype));
  tensor.set_(bytes, storage.view_offset + spec.storage_offset, spec.sizes, spec.strides);
  const auto element_size = static_cast<int64_t>(c10::elementSize(storage.dtype));
  const bool compact = !shared && tensor.storage_offset() == 0 && tensor.is_contiguous() &&
                       tensor.numel() * element_size == static_cast<int64_t>(bytes.nbytes());
  if (compact) return tensor;
  // A view (slice, transpose, shared storage) gets its own memory so that writing to one entry
  // never changes another; a tensor with overlapping strides (expanded) could be far larger than
  // its storage once copied, so it stays a view.
  if (tensor.numel() <= storage.view_numel) return tensor.clone(at::MemoryFormat::Contiguous);
  return tensor;
}

// `load_bytes(storage)` returns the storage's bytes, already checked to hold storage.numel
// elements.
template <typename LoadBytes>
StateDict to_state_dict(const Unpickler& unpickler, const PickleValue& root,
                        const std::map<std::string, StorageUse>& uses, LoadBytes load_bytes) {
  if (root.kind != Kind::kDict)
    throw PickleError(std::string("the file holds a ") + detail::kind_name(root.kind) +
                      ", not a state_dict (a dict of tensors)");
  std::map<std::string, c10::Storage> loaded;
  StateDict result;
  std::unordered_map<std::string, size_t> position;
  for (size_t i = 0; i + 1 < root.items.size(); i += 2) {
    const PickleValue& key = *root.items[i];
    const PickleValue& value = *root.items[i + 1];
    if (key.kind != Kind::kString)
      throw PickleError(std::string("the state_dict has a key of type ") +
                        detail::kind_name(key.kind) + ", not str");
    if (value.kind != Kind::kTensor)
      throw PickleError("entry '" + printable(key.text) + "' is " +
                        (value.kind == Kind::kGlobal ? "a global" : detail::kind_name(value.kind)) +
                        ", not a tensor (only state_dicts of tensors can be loaded)");
    const PickleTensor& spec = unpickler.tensors()[value.index];
    const PickleStorage& storage = unpickler.storages()[spec.storage];
    auto it = loaded.find(storage.key);
    if (it == loaded.end()) it = loaded.emplace(storage.key, load_bytes(storage)).first;
    const bool shared = uses.at(storage.key).tensors > 1;
    at::Tensor tensor = make_tensor(spec, storage, it->second, shared);
    auto [slot, inserted] = position.emplace(key.text, result.size());
    if (inserted)
      result.emplace_back(key.text, std::move(tensor));
    else
      result[slot->second].second = std::move(tensor);  // Python's dict keeps the last value
  }
  return result;
}

uint64_t storage_bytes(const PickleStorage& storage) {
  return static_cast<uint64_t>(storage.numel) * c10::elementSize(storage.dtype);
}

// ---------------------------------------------------------------------------------------------
// The two formats.

StateDict read_zip(const std::string& path, std::ifstream& in, uint64_t file_size) {
  std::string first_name;
  const auto entries = scan_zip(in, file_size, &first_name);
  in.close();
  // Record names carry the archive's folder (the saved file's stem, or "archive").
  std::string prefix;
  for (const auto& [name, entry] : entries) {
    if (name.size() > 9 && name.compare(name.size() - 9, 9, "/data.pkl") == 0 &&
        name.find('/') == name.size() - 9) {
      prefix = name.substr(0, name.size() - 8);
      break;
    }
  }
  if (prefix.empty())
    throw PickleError("zip archive has no data.pkl record (not a torch.save file)");
  // PyTorchStreamReader's constructor leaks its zip state when it throws (libtorch 1.13; found by
  // fuzz/fuzz_checkpoint_reader), so what it checks on opening is checked here first: it takes
  // the archive's folder from the first record and reads a version record there.
  if (first_name.compare(0, prefix.size(), prefix) != 0)
    throw PickleError("zip archive's first record '" + printable(first_name) +
                      "' is not in the folder of its data.pkl (not a torch.save file)");
  if (entries.count(prefix + ".data/version") == 0 && entries.count(prefix + "version") == 0)
    throw PickleError("zip archive has no version record (not a torch.save file)");
  caffe2::serialize::PyTorchStreamReader reader(path);
  auto byteorder = entries.find(prefix + "byteorder");
  if (byteorder != entries.end()) {
    auto [data, size] = reader.getRecord("byteorder");
    check_crc("byteorder", data, size, byteorder->second.crc32);
    std::string order(static_cast<const char*>(data.get()), size);
    if (order != "little") throw PickleError("big-endian files are not supported");
  }
  auto [pickle, pickle_size] = reader.getRecord("data.pkl");
  check_crc("data.pkl", pickle, pickle_size, entries.at(prefix + "data.pkl").crc32);
  Unpickler unpickler(static_cast<const char*>(pickle.get()), pickle_size);
  size_t end = 0;
  const PickleValue& root = unpickler.load(0, &end);
  const auto uses = storage_uses(unpickler);
  return to_state_dict(unpickler, root, uses, [&](const PickleStorage& storage) {
    const std::string name = "data/" + storage.key;
    auto entry = entries.find(prefix + name);
    if (entry == entries.end())
      throw PickleError("zip archive lacks record '" + printable(name) + "' for storage '" +
                        printable(storage.key) + "'");
    if (entry->second.uncompressed != storage_bytes(storage))
      throw PickleError(
          "record '" + printable(name) + "' holds " + std::to_string(entry->second.uncompressed) +
          " bytes but the pickle declares " + std::to_string(storage.numel) + " elements of " +
          std::to_string(c10::elementSize(storage.dtype)) + " bytes");
    auto [data, size] = reader.getRecord(name);
    if (size != storage_bytes(storage))
      throw PickleError("record '" + printable(name) + "' has the wrong size");
    check_crc(name, data, size, entry->second.crc32);
    return c10::Storage(c10::Storage::use_byte_size_t(), size, std::move(data),
                        /*allocator=*/nullptr, /*resizable=*/false);
  });
}

// 0x1950a86a20f9469cfc6c as a pickled long: little-endian two's complement.
constexpr unsigned char kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                          0x20, 0x6a, 0xa8, 0x50, 0x19};
constexpr int64_t kLegacyProtocol = 1001;

const PickleValue* dict_get(const PickleValue& dict, const std::string& key) {
  const PickleValue* found = nullptr;
  for (size_t i = 0; i + 1 < dict.items.size(); i += 2)
    if (dict.items[i]->kind == Kind::kString && dict.items[i]->text == key)
      found = dict.items[i + 1];
  return found;
}

StateDict read_legacy(std::ifstream& in, uint64_t file_size) {
  // Legacy files are read whole: storages follow the pickles and are only located after them.
  std::string file(file_size, '\0');
  in.clear();
  in.seekg(0);
  in.read(file.data(), static_cast<std::streamsize>(file_size));
  if (static_cast<uint64_t>(in.gcount()) != file_size) throw PickleError("read error");
  Unpickler unpickler(file.data(), file.size());
  size_t pos = 0;
  const PickleValue& magic = unpickler.load(pos, &pos);
  if (magic.kind != Kind::kBigInt || magic.text.size() != sizeof kLegacyMagic ||
      std::memcmp(magic.text.data(), kLegacyMagic, sizeof kLegacyMagic) != 0)
    throw PickleError("a pickle, but not a torch.save file (no magic number)");
  const PickleValue& protocol = unpickler.load(pos, &pos);
  if (protocol.kind != Kind::kInt || protocol.integer != kLegacyProtocol)
    throw PickleError("unsupported legacy torch.save protocol");
  const PickleValue& sys_info = unpickler.load(pos, &pos);
  const PickleValue* little_endian =
      sys_info.kind == Kind::kDict ? dict_get(sys_info, "little_endian") : nullptr;
  if (little_endian == nullptr || little_endian->kind != Kind::kBool)
    throw PickleError("corrupt legacy torch.save header (sys_info)");
  if (little_endian->integer == 0) throw PickleError("big-endian files are not supported");
  const PickleValue& root = unpickler.load(pos, &pos);
  const auto uses = storage_uses(unpickler);
  const PickleValue& keys = unpickler.load(pos, &pos);
  if (keys.kind != Kind::kList) throw PickleError("corrupt legacy file: no storage key list");

  // The storage section: per key, int64 element count then the raw bytes.
  std::map<std::string, c10::Storage> storages;
  for (const PickleValue* key_value : keys.items) {
    if (key_value->kind != Kind::kString) throw PickleError("corrupt legacy file: bad storage key");
    const std::string& key = key_value->text;
    auto use = uses.find(key);
    if (use == uses.end())
      throw PickleError("legacy file lists unknown storage '" + printable(key) + "'");
    if (storages.count(key) != 0)
      throw PickleError("legacy file lists storage '" + printable(key) + "' twice");
    if (file.size() - pos < 8)
      throw PickleError("truncated file: storage '" + printable(key) + "' is missing");
    const auto numel =
        static_cast<int64_t>(read_le(reinterpret_cast<const unsigned char*>(file.data() + pos), 8));
    pos += 8;
    const PickleStorage& storage = *use->second.storage;
    if (numel != storage.numel)
      throw PickleError("storage '" + printable(key) + "' has " + std::to_string(numel) +
                        " elements but the pickle declares " + std::to_string(storage.numel));
    const uint64_t nbytes = storage_bytes(storage);
    if (file.size() - pos < nbytes)
      throw PickleError("truncated file: storage '" + printable(key) + "' needs " +
                        std::to_string(nbytes) + " bytes, " + std::to_string(file.size() - pos) +
                        " remain");
    c10::Storage bytes(c10::Storage::use_byte_size_t(), nbytes, c10::GetCPUAllocator(),
                       /*resizable=*/false);
    if (nbytes > 0) std::memcpy(bytes.data(), file.data() + pos, nbytes);
    pos += nbytes;
    storages.emplace(key, std::move(bytes));
  }
  return to_state_dict(unpickler, root, uses, [&](const PickleStorage& storage) {
    auto it = storages.find(storage.key);
    if (it == storages.end())
      throw PickleError("truncated or corrupt file: storage '" + printable(storage.key) +
                        "' has no data");
    return it->second;
  });
}

StateDict read_state_dict_unchecked(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0)
    throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  if (S_ISDIR(info.st_mode)) throw Error(path, "is a directory, not a state_dict file");
  // A FIFO or device would block or never end; state_dicts are regular files.
  if (!S_ISREG(info.st_mode)) throw Error(path, "not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const auto file_size = static_cast<uint64_t>(in.tellg());
  if (file_size == 0) throw Error(path, "empty file (not a PyTorch state_dict)");
  unsigned char head[4] = {0, 0, 0, 0};
  in.seekg(0);
  in.read(reinterpret_cast<char*>(head),
          static_cast<std::streamsize>(std::min<uint64_t>(4, file_size)));
  if (file_size >= 4 && head[0] == 'P' && head[1] == 'K' && (head[2] == 3 || head[2] == 5))
    return read_zip(path, in, file_size);
  if (head[0] == 0x80) return read_legacy(in, file_size);
  throw Error(path,
              "not a PyTorch state_dict file (neither a zip archive nor a legacy torch.save file)");
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// ---------------------------------------------------------------------------------------------
// Writing: the pickle Python's torch.save emits for an OrderedDict of tensors (protocol 2), in the
// zip layout of PyTorchStreamWriter (the writer Python itself uses).

class PickleWriter {
 public:
  std::string bytes;

  void op(unsigned char code) { bytes.push_back(static_cast<char>(code)); }
  void le(uint64_t value, int n) {
    for (int i = 0; i < n; ++i) bytes.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  }
  void integer(int64_t value) {
    if (value >= 0 && value < 256) {
      op('K');
      le(static_cast<uint64_t>(value), 1);
    } else if (value >= 0 && value < 65536) {
      op('M');
      le(static_cast<uint64_t>(value), 2);
    } else if (value >= std::numeric_limits<int32_t>::min() &&
               value <= std::numeric_limits<int32_t>::max()) {
      op('J');
      le(static_cast<uint64_t>(value), 4);
    } else {
      op(0x8a);  // LONG1 with 8 bytes of two's complement
      le(8, 1);
      le(static_cast<uint64_t>(value), 8);
    }
  }
  void string(const std::string& text) {
    op('X');
    le(text.size(), 4);
    bytes += text;
  }
  void global(const std::string& module, const std::string& name) {
    op('c');
    bytes += module + "\n" + name + "\n";
  }
  void int_tuple(c10::IntArrayRef values) {
    if (values.empty()) {
      op(')');
      return;
    }
    op('(');
    for (int64_t value : values) integer(value);
    op('t');
  }
};

std::string state_dict_pickle(const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  PickleWriter w;
  w.op(0x80);  // PROTO 2, torch.save's default
  w.le(2, 1);
  w.global("collections", "OrderedDict");
  w.op(')');
  w.op('R');
  w.op('(');
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& tensor = tensors[i].second;
    w.string(tensors[i].first);
    w.global("torch._utils", "_rebuild_tensor_v2");
    w.op('(');
    w.op('(');  // persistent id ('storage', torch.<T>Storage, key, 'cpu', numel)
    w.string("storage");
    w.global("torch", detail::storage_class(tensor.scalar_type()));
    w.string(std::to_string(i));
    w.string("cpu");
    w.integer(tensor.numel());
    w.op('t');
    w.op('Q');
    w.integer(0);
    w.int_tuple(tensor.sizes());
    w.int_tuple(tensor.strides());
    w.op(0x89);                              // requires_grad=False, as state_dict() detaches
    w.global("collections", "OrderedDict");  // backward_hooks
    w.op(')');
    w.op('R');
    w.op('t');
    w.op('R');
  }
  w.op('u');  // SETITEMS
  w.op('.');
  return std::move(w.bytes);
}

// Writes everything or records the first errno; never reports a short write to miniz, whose
// error path can throw from PyTorchStreamWriter's destructor (std::terminate).
struct FileSink {
  std::FILE* file = nullptr;
  int error = 0;
  size_t operator()(const void* data, size_t n) {
    if (error == 0 && n > 0 && std::fwrite(data, 1, n, file) != n) error = errno != 0 ? errno : EIO;
    return n;
  }
};

void write_zip(FileSink& sink, const std::string& pickle,
               const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  auto writer = std::make_unique<caffe2::serialize::PyTorchStreamWriter>(
      [&sink](const void* data, size_t n) { return sink(data, n); });
  try {
    writer->writeRecord("data.pkl", pickle.data(), pickle.size());
    writer->writeRecord("byteorder", "little", 6);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const at::Tensor& tensor = tensors[i].second;
      writer->writeRecord("data/" + std::to_string(i), tensor.data_ptr(), tensor.nbytes());
    }
    writer->writeEndOfFile();
  } catch (...) {
    try {
      if (!writer->finalized()) writer->writeEndOfFile();
    } catch (...) {
    }
    // An unfinalized writer would finalize again in its destructor and may throw there; leaking
    // it on this (allocation-failure-only) path is the lesser harm.
    if (writer->finalized())
      writer.reset();
    else
      (void)writer.release();
    throw;
  }
}

std::string shape_string(c10::IntArrayRef sizes) {
  std::ostringstream out;
  out << sizes;
  return out.str();
}

std::string name_list(const std::vector<std::string>& names) {
  constexpr size_t kShown = 20;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > kShown) out += ", ... (" + std::to_string(names.size() - kShown) + " more)";
  return out;
}

void collect(const torch::nn::Module& module, const std::string& prefix, StateDict& out) {
  for (const auto& item : module.named_parameters(/*recurse=*/false))
    if (item.value().defined()) out.emplace_back(prefix + item.key(), item.value().detach());
  for (const auto& item : module.named_buffers(/*recurse=*/false))
    if (item.value().defined()) out.emplace_back(prefix + item.key(), item.value().detach());
  for (const auto& child : module.named_children())
    collect(*child.value(), prefix + child.key() + ".", out);
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

StateDict read_state_dict(const std::string& path) {
  // Whatever goes wrong inside (miniz via c10::Error, allocation, the unpickler) reaches the
  // caller as one Error naming the file.
  try {
    return read_state_dict_unchecked(path);
  } catch (const Error&) {
    throw;
  } catch (const PickleError& e) {
    throw Error(path, e.what());
  } catch (const c10::Error& e) {
    throw Error(path, "corrupt or unsupported file: " + first_line(e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    throw Error(path, "out of memory while reading the state_dict", ErrorKind::kRuntime);
  } catch (const std::exception& e) {
    throw Error(path, first_line(e.what()));
  }
}

void write_state_dict(const std::string& path, const StateDict& dict) {
  // Validate and lay out every tensor before touching the file system.
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  tensors.reserve(dict.size());
  std::unordered_set<std::string> names;
  for (const auto& [name, tensor] : dict) {
    if (name.empty()) throw Error(path, "state_dict has an empty key");
    if (!names.insert(name).second) throw Error(path, "state_dict repeats key '" + name + "'");
    if (!tensor.defined()) throw Error(path, "entry '" + name + "' is an undefined tensor");
    if (tensor.layout() != at::kStrided || tensor.is_quantized())
      throw Error(path, "entry '" + name + "' is not a dense tensor");
    if (detail::storage_class(tensor.scalar_type()) == nullptr)
      throw Error(path, "entry '" + name + "' has unsupported dtype " +
                            std::string(c10::toString(tensor.scalar_type())));
    at::Tensor data;
    try {
      data = tensor.detach().to(at::kCPU).contiguous();
      // The record holds exactly this tensor's elements, so a view must get its own storage.
      if (data.storage_offset() != 0 || data.nbytes() != data.storage().nbytes())
        data = data.clone(at::MemoryFormat::Contiguous);
    } catch (const c10::Error& e) {
      throw Error(path, "entry '" + name + "': " + first_line(e.what_without_backtrace()));
    }
    tensors.emplace_back(name, std::move(data));
  }
  const std::string pickle = state_dict_pickle(tensors);

  detail::AtomicFile file(path);
  FileSink sink{file.stream()};
  std::string failure;
  try {
    write_zip(sink, pickle, tensors);
    if (sink.error != 0) failure = std::string("write failed: ") + std::strerror(sink.error);
  } catch (const c10::Error& e) {
    failure = "write failed: " + first_line(e.what_without_backtrace());
  } catch (const std::exception& e) {
    failure = std::string("write failed: ") + e.what();
  }
  if (!failure.empty()) throw Error(path, failure, ErrorKind::kRuntime);  // removes the temporary
  file.commit();
}

StateDict module_state_dict(const torch::nn::Module& module) {
  StateDict out;
  collect(module, "", out);
  return out;
}

void load_state_dict(torch::nn::Module& module, const StateDict& dict, const std::string& source,
                     bool strict) {
  std::unordered_map<std::string, const at::Tensor*> given;
  for (const auto& [name, tensor] : dict) given[name] = &tensor;  // a repeated key: last wins
  const StateDict targets = module_state_dict(module);
  std::unordered_set<std::string> expected;
  std::vector<std::string> missing, unexpected, mismatched;
  std::unordered_set<std::string> reported;
  std::vector<std::pair<at::Tensor, const at::Tensor*>> copies;
  for (const auto& [name, target] : targets) {
    expected.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      // Checkpoints from before BatchNorm counted batches lack the counter; keep the model's.
      if (!ends_with("." + name, ".num_batches_tracked")) missing.push_back(name);
      continue;
    }
    const at::Tensor& source_tensor = *it->second;
    if (!source_tensor.defined() || source_tensor.sizes() != target.sizes()) {
      mismatched.push_back(
          name + " (file " +
          (source_tensor.defined() ? shape_string(source_tensor.sizes()) : "undefined") +
          ", model " + shape_string(target.sizes()) + ")");
      continue;
    }
    copies.emplace_back(target, &source_tensor);
  }
  for (const auto& [name, tensor] : dict)
    if (expected.count(name) == 0 && reported.insert(name).second) unexpected.push_back(name);

  std::string problems;
  auto add = [&problems](const std::string& label, const std::vector<std::string>& names) {
    if (names.empty()) return;
    problems += (problems.empty() ? "" : "; ") + label + ": " + name_list(names);
  };
  if (strict) {
    add("missing keys", missing);
    add("unexpected keys", unexpected);
  }
  add("shape mismatch", mismatched);
  if (!problems.empty()) throw Error(source, "state_dict does not match the model: " + problems);

  at::NoGradGuard no_grad;
  for (auto& [target, source_tensor] : copies) target.copy_(*source_tensor);
}

}  // namespace pix2pix
