// `data get`: downloads from a real HTTP server on 127.0.0.1 serving a small tar.gz made here,
// whole, cut in the middle and resumed, damaged, missing (404), and an unknown name.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include "pix2pix/error.h"
#include "pix2pix/tools/download.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The bytes of dir/facades.tar.gz made from dir/pack/facades.
std::string pack_archive(const std::string& dir) {
  const auto tar = test::run_command("tar czf " + test::shell_quote(dir + "/facades.tar.gz") +
                                     " -C " + test::shell_quote(dir + "/pack") + " facades");
  EXPECT_EQ(tar.exit_code, 0) << tar.output;
  return read_bytes(dir + "/facades.tar.gz");
}

// facades.tar.gz holding facades/{train,val}/*.png, as the authors' archives are laid out.
std::string make_archive(const std::string& dir) {
  const std::string data = test::small_synth_data(dir);
  fs::create_directories(dir + "/pack");
  fs::copy(data, dir + "/pack/facades", fs::copy_options::recursive);
  return pack_archive(dir);
}

// Options that get `name` into dir/datasets from `url`.
GetDatasetOptions get_options(const std::string& name, const std::string& dir,
                              const std::string& url) {
  GetDatasetOptions options;
  options.name = name;
  options.out = dir + "/datasets";
  options.url = url;
  return options;
}

// A server on a free port of 127.0.0.1: routes first (serve), then start(). httplib answers
// Range requests itself (206 and Content-Range) for content set whole.
class Server {
 public:
  Server() { port_ = server_.bind_to_any_port("127.0.0.1"); }
  ~Server() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  void start() {
    ASSERT_GT(port_, 0) << "no free port on 127.0.0.1";
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    for (int i = 0; i < 1000 && !server_.is_running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_TRUE(server_.is_running());
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  /// Serves `bytes` at `path`; with `cut`, the first request gets the headers of the whole file
  /// but only its first half before the connection closes.
  void serve(const std::string& path, const std::string& bytes, bool cut = false) {
    auto cut_pending = std::make_shared<std::atomic<bool>>(cut);
    server_.Get(path, [this, bytes, cut_pending](const httplib::Request& request,
                                                 httplib::Response& response) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ranges_.push_back(request.get_header_value("Range"));
      }
      if (cut_pending->exchange(false)) {
        response.set_content_provider(bytes.size(), "application/gzip",
                                      [bytes](size_t offset, size_t, httplib::DataSink& sink) {
                                        if (offset >= bytes.size() / 2)
                                          return false;  // drop the connection
                                        sink.write(bytes.data(), bytes.size() / 2);
                                        return true;
                                      });
        return;
      }
      response.set_content(bytes, "application/gzip");
    });
  }
  /// The Range header of each request so far ("" when none).
  std::vector<std::string> ranges() {
    std::lock_guard<std::mutex> lock(mutex_);
    return ranges_;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mutex_;
  std::vector<std::string> ranges_;
};

TEST(GetDataset, DownloadsUnpacksAndNamesTheTask) {
  const std::string dir = test::temp_dir();
  const std::string archive = make_archive(dir);
  Server server;
  server.serve("/facades.tar.gz", archive);
  server.start();
  GetDatasetOptions options = get_options("facades", dir, server.url("/facades.tar.gz"));
  int64_t last = 0;
  options.progress = [&](int64_t bytes, int64_t total) {
    EXPECT_EQ(total, static_cast<int64_t>(archive.size()));
    last = bytes;
  };
  const GetDatasetResult got = get_dataset(options);
  EXPECT_EQ(last, static_cast<int64_t>(archive.size()));
  EXPECT_EQ(got.bytes, static_cast<int64_t>(archive.size()));
  EXPECT_EQ(got.resumed_from, 0);
  EXPECT_EQ(got.folder, dir + "/datasets/facades");
  EXPECT_EQ(read_bytes(got.archive), archive);
  EXPECT_EQ(got.dataset.direction, "BtoA");
  for (const char* split : {"train", "val"})
    EXPECT_EQ(
        std::distance(fs::directory_iterator(got.folder + "/" + split), fs::directory_iterator()),
        std::distance(fs::directory_iterator(dir + "/data/" + split), fs::directory_iterator()))
        << split;
  // Nothing else is left beside it.
  for (const auto& entry : fs::directory_iterator(dir + "/datasets"))
    EXPECT_TRUE(entry.path().filename() == "facades" || entry.path().filename() == "facades.tar.gz")
        << entry.path();
  // A second get refuses to overwrite it.
  EXPECT_THROW(get_dataset(options), Error);
}

TEST(GetDataset, ResumesADownloadCutInTheMiddle) {
  const std::string dir = test::temp_dir();
  const std::string archive = make_archive(dir);
  Server server;
  server.serve("/facades.tar.gz", archive, /*cut=*/true);
  server.start();
  GetDatasetOptions options = get_options("facades", dir, server.url("/facades.tar.gz"));
  try {
    get_dataset(options);
    FAIL() << "a cut download must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the same command resumes it"), std::string::npos)
        << e.what();
  }
  const std::string part = dir + "/datasets/facades.tar.gz.part";
  ASSERT_TRUE(fs::exists(part));
  EXPECT_EQ(fs::file_size(part), archive.size() / 2);
  EXPECT_FALSE(fs::exists(dir + "/datasets/facades"));

  const GetDatasetResult got = get_dataset(options);
  EXPECT_EQ(got.resumed_from, static_cast<int64_t>(archive.size() / 2));
  EXPECT_EQ(read_bytes(got.archive), archive);
  EXPECT_TRUE(fs::is_directory(got.folder + "/train"));
  const auto ranges = server.ranges();
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], "");
  EXPECT_EQ(ranges[1], "bytes=" + std::to_string(archive.size() / 2) + "-");
}

TEST(GetDataset, RefusesADamagedArchiveAndLeavesNothingUnpacked) {
  const std::string dir = test::temp_dir();
  std::string archive = make_archive(dir);
  archive.resize(archive.size() * 2 / 3);  // the gzip stream ends early
  Server server;
  server.serve("/facades.tar.gz", archive);
  server.start();
  GetDatasetOptions options = get_options("facades", dir, server.url("/facades.tar.gz"));
  try {
    get_dataset(options);
    FAIL() << "a damaged archive must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("facades.tar.gz"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nothing unpacked"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir + "/datasets"));
}

// An archive with a symbolic link in it (it could point anywhere) is refused whole.
TEST(GetDataset, RefusesAnArchiveWithALink) {
  const std::string dir = test::temp_dir();
  fs::create_directories(dir + "/pack/facades/train");
  fs::create_symlink("/etc/passwd", dir + "/pack/facades/train/1.png");
  Server server;
  server.serve("/facades.tar.gz", pack_archive(dir));
  server.start();
  GetDatasetOptions options = get_options("facades", dir, server.url("/facades.tar.gz"));
  try {
    get_dataset(options);
    FAIL() << "an archive with a link must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsafe archive"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir + "/datasets"));
}

TEST(GetDataset, NamesAMissingFileAndAnUnknownDataset) {
  const std::string dir = test::temp_dir();
  Server server;
  server.start();
  GetDatasetOptions options = get_options("maps", dir, server.url("/nothing/maps.tar.gz"));
  try {
    get_dataset(options);
    FAIL() << "a 404 must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("HTTP 404"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(options.url), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir + "/datasets/maps"));
  options.name = "horses";
  try {
    get_dataset(options);
    FAIL() << "an unknown name must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "name");
    for (const KnownDataset& known : known_datasets())
      EXPECT_NE(std::string(e.what()).find(known.name), std::string::npos) << e.what();
  }
}

// The command: exit 0, the splits counted and the command that trains on them; bad name exit 2.
TEST(GetDataset, CommandPrintsHowToTrain) {
  const std::string dir = test::temp_dir();
  const std::string archive = make_archive(dir);
  Server server;
  server.serve("/facades.tar.gz", archive);
  server.start();
  auto result = test::run_cli("data get facades --out " + test::shell_quote(dir + "/datasets") +
                              " --url " + server.url("/facades.tar.gz"));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("train: 6 pairs"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("pix2pix train --data " + dir +
                               "/datasets/facades --name facades "
                               "--direction BtoA"),
            std::string::npos)
      << result.output;
  result = test::run_cli("data get horses --out " + test::shell_quote(dir + "/datasets"));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("error: name: unknown dataset 'horses'"), std::string::npos)
      << result.output;
}

}  // namespace
}  // namespace pix2pix
