// `pix2pix serve` as users run it: the built CLI as a child process on a free port of 127.0.0.1
// (--port 0, the port read from its "serving" line), talked to over real HTTP. Answers equal
// `pix2pix translate`'s files byte for byte; bad uploads get JSON errors and the server goes on;
// a queue bound gives 503; SIGTERM finishes the request in flight; the page works in Chromium.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <tiffio.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "pix2pix/io/image_io.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/tools/server.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::shell_quote;

const std::string kSmallNet = "--netG unet --num-downs 5 --ngf 8";

// Weights of the kSmallNet generator (seeded torch init), as `model --save-G` writes them.
std::string save_small_net(const std::string& dir) {
  const std::string path = dir + "/G.pth";
  test::save_small_unet(path, 3);
  return path;
}

Image pattern(int width, int height, int seed) {
  Image image(width, height, 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c)
        image.at<uint8_t>(y, x, c) = static_cast<uint8_t>(
            (x * (3 + c) + y * (5 + seed) + ((x / 16 + y / 16) % 2) * 90) % 256);
  return image;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// An 8-bit RGB TIFF in strips, written with libtiff.
void write_rgb_tiff(const std::string& path, const Image& image) {
  TIFF* tiff = TIFFOpen(path.c_str(), "w");
  ASSERT_NE(tiff, nullptr);
  TIFFSetField(tiff, TIFFTAG_IMAGEWIDTH, uint32_t(image.width));
  TIFFSetField(tiff, TIFFTAG_IMAGELENGTH, uint32_t(image.height));
  TIFFSetField(tiff, TIFFTAG_SAMPLESPERPIXEL, uint16_t(3));
  TIFFSetField(tiff, TIFFTAG_BITSPERSAMPLE, uint16_t(8));
  TIFFSetField(tiff, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
  TIFFSetField(tiff, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(tiff, TIFFTAG_ROWSPERSTRIP, uint32_t(8));
  for (int y = 0; y < image.height; ++y)
    TIFFWriteScanline(tiff, const_cast<uint8_t*>(&image.data[y * image.row_bytes()]), y, 0);
  TIFFClose(tiff);
}

// `pix2pix serve ARGS --port 0` as a child process; its output is collected line by line.
class ServeProcess {
 public:
  explicit ServeProcess(const std::string& args) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      dup2(out[1], STDERR_FILENO);
      close(out[0]);
      close(out[1]);
      const std::string command =
          "exec " + shell_quote(test::cli_path()) + " --threads 2 serve --port 0 " + args;
      execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    reader_ = std::thread([this, fd = out[0]] { read_lines(fd); });
    // The port from "serving http://127.0.0.1:PORT/", or the failure's output.
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait_for(lock, std::chrono::seconds(60), [&] { return port_ > 0 || ended_; });
  }
  ~ServeProcess() {
    if (exit_code_ < 0 && pid_ > 0) {
      kill(pid_, SIGKILL);
      wait_exit();
    }
    if (reader_.joinable()) reader_.join();
  }

  int port() const { return port_; }
  // Sends `signal` and returns the exit status (128 + signal when killed by one).
  int stop(int signal = SIGTERM) {
    kill(pid_, signal);
    return wait_exit();
  }
  std::string output() {
    std::lock_guard<std::mutex> lock(mutex_);
    return output_;
  }

 private:
  void read_lines(int fd) {
    char buffer[4096];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof(buffer))) > 0 || (n < 0 && errno == EINTR)) {
      if (n <= 0) continue;
      std::lock_guard<std::mutex> lock(mutex_);
      output_.append(buffer, size_t(n));
      const auto at = output_.find("serving http://127.0.0.1:");
      if (port_ == 0 && at != std::string::npos && output_.find('\n', at) != std::string::npos)
        port_ = std::stoi(output_.substr(at + 25));
      ready_.notify_all();
    }
    close(fd);
    std::lock_guard<std::mutex> lock(mutex_);
    ended_ = true;
    ready_.notify_all();
  }
  int wait_exit() {
    int status = 0;
    waitpid(pid_, &status, 0);
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::thread reader_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::string output_;
  int port_ = 0;
  bool ended_ = false;
};

// What a request got: status (-1: no answer), body and Retry-After.
struct Answer {
  int status = -1;
  std::string body;
  std::string retry_after;
  std::string content_type;
};

Answer post(int port, const std::string& body, const std::string& content_type = "image/png",
            const std::string& path = "/v1/translate") {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  client.set_write_timeout(60, 0);
  Answer answer;
  if (auto result = client.Post(path.c_str(), body, content_type.c_str())) {
    answer.status = result->status;
    answer.body = result->body;
    answer.retry_after = result->get_header_value("Retry-After");
    answer.content_type = result->get_header_value("Content-Type");
  }
  return answer;
}

Answer get(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  Answer answer;
  if (auto result = client.Get(path.c_str())) {
    answer.status = result->status;
    answer.body = result->body;
    answer.content_type = result->get_header_value("Content-Type");
  }
  return answer;
}

// The "error" of a JSON error answer ("" when the body is not one).
std::string error_of(const Answer& answer) {
  const auto json = nlohmann::json::parse(answer.body, nullptr, false);
  return json.is_object() && json.contains("error") ? json["error"].get<std::string>() : "";
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir();
    weights_ = save_small_net(dir_);
  }
  // `pix2pix translate`'s file for `input` (run with the same weights and `flags`).
  std::string translated(const std::string& input, const std::string& flags = "") {
    const std::string out = dir_ + "/translated_" + std::to_string(++translations_);
    const auto result = run_cli("translate " + kSmallNet + " --weights " + weights_ + " " + flags +
                                " --out " + out + " " + input);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return read_file(out + "/" + fs::path(input).stem().string() + ".png");
  }
  std::string serve_args(const std::string& flags = "") const {
    return kSmallNet + " --weights " + weights_ + " " + flags;
  }
  std::string put(const std::string& name, const Image& image) {
    return test::put_image(dir_, name, image);
  }

  std::string dir_, weights_;
  int translations_ = 0;
};

TEST_F(ServerTest, AnswersEqualTranslateByteForByte) {
  const std::string png = put("odd.png", pattern(70, 45, 1));  // padded to 96x64 and cropped
  const std::string jpeg = test::shared_dir() + "/data/facades/train/1.jpg";
  const std::string tiff = dir_ + "/photo.tif";
  write_rgb_tiff(tiff, pattern(64, 96, 2));
  const std::string tiled = put("tiled.png", pattern(160, 96, 3));

  ServeProcess server(serve_args());
  ASSERT_GT(server.port(), 0) << server.output();
  EXPECT_EQ(get(server.port(), "/healthz").status, 200);
  const Answer model = get(server.port(), "/v1/model");
  ASSERT_EQ(model.status, 200);
  const auto json = nlohmann::json::parse(model.body);
  EXPECT_EQ(json["architecture"]["netG"], "unet");
  EXPECT_EQ(json["architecture"]["ngf"], 8);
  EXPECT_EQ(json["channels"]["input"], 3);
  EXPECT_EQ(json["size_multiple"], 32);
  EXPECT_EQ(json["mode"], "eval");
  EXPECT_EQ(json["precision"], "fp32");
  EXPECT_TRUE(json["direction"].is_null());  // a loose state_dict has none
  const Answer page = get(server.port(), "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("id=\"file\""), std::string::npos);
  EXPECT_EQ(page.body.find("src=\"http"), std::string::npos);  // nothing external

  for (const std::string& input : {png, jpeg, tiff}) {
    const Answer answer = post(server.port(), read_file(input), "application/octet-stream");
    EXPECT_EQ(answer.status, 200) << input << ": " << answer.body.substr(0, 200);
    EXPECT_EQ(answer.content_type, "image/png");
    EXPECT_TRUE(answer.body == translated(input)) << input << " differs from translate's";
  }
  EXPECT_EQ(server.stop(), 0) << server.output();
  EXPECT_NE(server.output().find("POST /v1/translate 200 in="), std::string::npos)
      << server.output();

  // Tiling as translate tiles, with the same flags.
  ServeProcess tiling(serve_args("--tile 64 --overlap 32"));
  ASSERT_GT(tiling.port(), 0) << tiling.output();
  const Answer answer = post(tiling.port(), read_file(tiled));
  EXPECT_EQ(answer.status, 200) << answer.body.substr(0, 200);
  EXPECT_TRUE(answer.body == translated(tiled, "--tile 64 --overlap 32"));
  EXPECT_EQ(tiling.stop(SIGINT), 0) << tiling.output();
}

TEST_F(ServerTest, BadInputsGetJsonErrorsAndServingGoesOn) {
  const std::string good = read_file(put("good.png", pattern(64, 64, 4)));
  const std::string expected = translated(dir_ + "/good.png");
  const std::string big = read_file(put("big.png", pattern(128, 96, 5)));  // 12288 pixels
  std::string noise(700 * 1024, '\0');
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>(i * 2654435761u >> 13);
  const std::string large_body = read_file(put("large.png", pattern(64, 32, 6))) + noise;

  ServeProcess server(serve_args("--max-pixels 10000 --max-body-mb 0.5"));
  ASSERT_GT(server.port(), 0) << server.output();
  struct Case {
    std::string what, body, content_type;
    int status;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"empty", "", "image/png", 400, "empty body"},
      {"text", "hello", "text/plain", 415, "text/plain is not a PNG, JPEG or TIFF"},
      {"form", good, "multipart/form-data; boundary=x", 415, "multipart/form-data"},
      {"curl's default type", large_body.substr(0, 20000), "application/x-www-form-urlencoded", 415,
       "-H 'Content-Type: image/png'"},
      {"not an image", "hello, world", "application/octet-stream", 415, "not a PNG/JPEG/TIFF"},
      {"gif", "GIF89a\x01\x00\x01\x00", "application/octet-stream", 415, "it is a GIF"},
      {"truncated", good.substr(0, good.size() / 2), "image/png", 400, "truncated PNG data"},
      {"too many pixels", big, "image/png", 413, "more than the limit of 10000"},
      {"too large", large_body, "image/png", 413, "over the limit of 524288 bytes"},
  };
  for (const Case& c : cases) {
    const Answer answer = post(server.port(), c.body, c.content_type);
    EXPECT_EQ(answer.status, c.status) << c.what << ": " << answer.body;
    EXPECT_EQ(answer.content_type, "application/json") << c.what;
    EXPECT_NE(error_of(answer).find(c.fragment), std::string::npos)
        << c.what << ": " << answer.body;
    const Answer next = post(server.port(), good);
    EXPECT_EQ(next.status, 200) << "after " << c.what << ": " << next.body.substr(0, 200);
    EXPECT_TRUE(next.body == expected) << "after " << c.what;
  }
  const Answer unknown = get(server.port(), "/v2/nothing");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(error_of(unknown).find("no such endpoint"), std::string::npos) << unknown.body;
  const Answer not_utf8 = get(server.port(), "/%FF");  // quoted in the error: must not crash it
  EXPECT_EQ(not_utf8.status, 404);
  EXPECT_NE(error_of(not_utf8).find("no such endpoint"), std::string::npos) << not_utf8.body;
  EXPECT_EQ(server.stop(), 0) << server.output();
  EXPECT_NE(server.output().find("POST /v1/translate 415 in=5 out="), std::string::npos)
      << server.output();
}

TEST_F(ServerTest, EightClientsTimesTwentyFiveRequests) {
  const std::string input = put("small.png", pattern(64, 48, 7));
  const std::string body = read_file(input);
  const std::string expected = translated(input);
  ServeProcess server(serve_args("--workers 2 --max-queue 16"));
  ASSERT_GT(server.port(), 0) << server.output();
  std::atomic<int> correct{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", server.port());  // keep-alive: one connection each
      client.set_keep_alive(true);
      client.set_read_timeout(120, 0);
      for (int j = 0; j < 25; ++j) {
        auto result = client.Post("/v1/translate", body, "image/png");
        if (result && result->status == 200 && result->body == expected) ++correct;
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(correct.load(), 200);
  EXPECT_EQ(server.stop(), 0) << server.output();
}

TEST_F(ServerTest, BeyondTheQueueBoundAnswers503WithRetryAfter) {
  const std::string input = put("large.png", pattern(512, 512, 8));
  const std::string body = read_file(input);
  const std::string expected = translated(input);
  ServeProcess server(serve_args("--workers 1 --max-queue 1"));
  ASSERT_GT(server.port(), 0) << server.output();
  std::vector<Answer> answers(6);
  std::vector<std::thread> clients;
  for (auto& answer : answers)
    clients.emplace_back([&answer, &server, &body] { answer = post(server.port(), body); });
  for (auto& client : clients) client.join();
  int ok = 0, busy = 0;
  for (const Answer& answer : answers) {
    if (answer.status == 200) {
      ++ok;
      EXPECT_TRUE(answer.body == expected);
    } else {
      EXPECT_EQ(answer.status, 503) << answer.body;
      EXPECT_EQ(answer.retry_after, "1");
      EXPECT_NE(error_of(answer).find("busy"), std::string::npos) << answer.body;
      ++busy;
    }
  }
  EXPECT_GE(ok, 2);  // one running, one queued
  EXPECT_GE(busy, 1);
  EXPECT_EQ(post(server.port(), body).status, 200);  // and then serving again
  EXPECT_EQ(server.stop(), 0) << server.output();
}

TEST_F(ServerTest, SigtermLetsTheRequestInFlightFinish) {
  const std::string input = put("huge.png", pattern(1600, 1600, 9));  // about a second here
  const std::string body = read_file(input);
  ServeProcess server(serve_args());
  ASSERT_GT(server.port(), 0) << server.output();
  Answer answer;
  std::thread client([&] { answer = post(server.port(), body); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // sent and being translated
  const auto signalled = std::chrono::steady_clock::now();
  EXPECT_EQ(server.stop(SIGTERM), 0) << server.output();
  client.join();
  EXPECT_EQ(answer.status, 200) << answer.body.substr(0, 200);
  const Image result = decode_image(answer.body, "answer");
  EXPECT_EQ(result.width, 1600);
  EXPECT_EQ(result.height, 1600);
  EXPECT_NE(server.output().find("POST /v1/translate 200"), std::string::npos) << server.output();
  EXPECT_NE(server.output().find("stopped"), std::string::npos);
  // The request was still in flight when the signal came (else this test shows nothing).
  EXPECT_EQ(std::chrono::steady_clock::now() - signalled > std::chrono::milliseconds(100), true)
      << "the translation finished before SIGTERM: make the image larger";
  EXPECT_EQ(get(server.port(), "/healthz").status, -1);  // no longer listening
}

TEST_F(ServerTest, BadFlagsExitWithStatus2) {
  auto workers = run_cli("serve " + serve_args("--workers 0"));
  EXPECT_EQ(workers.exit_code, 2) << workers.output;
  EXPECT_NE(workers.output.find("--workers"), std::string::npos) << workers.output;
  auto tile = run_cli("serve " + serve_args("--train-mode --tile 64 --port 0"));
  EXPECT_EQ(tile.exit_code, 2) << tile.output;
  EXPECT_NE(tile.output.find("--tile"), std::string::npos) << tile.output;
  auto body = run_cli("serve " + serve_args("--max-body-mb 0"));
  EXPECT_EQ(body.exit_code, 2) << body.output;
}

// The page in headless Chromium: upload through its file input, and the image behind its
// download link is translate's file, byte for byte.
TEST_F(ServerTest, PageTranslatesAnUploadInChromium) {
  const std::string modules = test::node_modules();
  if (modules.empty()) GTEST_SKIP() << "node or tests/node/node_modules missing";
  if (!test::required(fs::exists("/usr/bin/chromium"), "/usr/bin/chromium"))
    GTEST_SKIP() << "no /usr/bin/chromium";
  const std::string input = put("facade.png", pattern(96, 64, 10));
  const std::string expected = translated(input);
  ServeProcess server(serve_args());
  ASSERT_GT(server.port(), 0) << server.output();
  const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  const std::string screenshot = dir_ + "/page.png";
  const auto result =
      test::run_command("NODE_PATH=" + shell_quote(modules) + " node " +
                        shell_quote(test::source_dir() + "/tests/tools/serve_page.js") + " " +
                        shell_quote(url) + " " + shell_quote(input) + " " +
                        shell_quote(dir_ + "/downloaded.png") + " " + shell_quote(screenshot));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("download name: facade.png"), std::string::npos) << result.output;
  EXPECT_TRUE(read_file(dir_ + "/downloaded.png") == expected);
  EXPECT_GT(read_image_info(screenshot).width, 500);
  EXPECT_EQ(server.stop(), 0) << server.output();
}

}  // namespace
}  // namespace pix2pix
