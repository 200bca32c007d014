// `pix2pix serve`'s HTTP server: cpp-httplib's threads read requests, an admission gate bounds
// how many translations run and wait, and every answer that is not an image is JSON. The page
// GET / serves lives in serve_page.cpp.
#include "pix2pix/tools/server.h"

#include <fmt/core.h>
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>

#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/names.h"
#include "pix2pix/threads.h"

namespace pix2pix {

namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Bounds the translations running (`workers`) and waiting (`max_queue`); a request that finds
// both full is turned away at once, so a burst cannot pile up unbounded memory and latency.
class AdmissionGate {
 public:
  AdmissionGate(int workers, int max_queue) : workers_(workers), max_queue_(max_queue) {}

  // Waits for a worker; false, without waiting, when max_queue requests already wait.
  bool enter() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (running_ >= workers_ && waiting_ >= max_queue_) return false;
    ++waiting_;
    free_.wait(lock, [&] { return running_ < workers_; });
    --waiting_;
    ++running_;
    return true;
  }
  void leave() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --running_;
    }
    free_.notify_one();
  }

 private:
  const int workers_, max_queue_;
  int running_ = 0, waiting_ = 0;
  std::mutex mutex_;
  std::condition_variable free_;
};

// When the request on this connection thread started (set before routing; logged after).
thread_local Clock::time_point request_start;
thread_local bool request_started = false;

void answer_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  // replace: a message quoting the request (a path with byte 0xFF) must not throw here.
  res.set_content(Json{{"error", message}}.dump(-1, ' ', false, Json::error_handler_t::replace),
                  "application/json");
}

// The media type of a Content-Type header, lower case, without parameters.
std::string media_type(const std::string& content_type) {
  std::string type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  for (char& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return type;
}

// Empty when an upload of this Content-Type may hold an image (its bytes decide which); else
// why not. curl --data-binary sends application/x-www-form-urlencoded unless told otherwise.
std::string refuse_content_type(const std::string& content_type) {
  const std::string type = media_type(content_type);
  if (type.empty() || type == "image/png" || type == "image/jpeg" || type == "image/jpg" ||
      type == "image/tiff" || type == "application/octet-stream")
    return "";
  // httplib parses such bodies as forms and refuses them above 8 KB.
  if (type == "application/x-www-form-urlencoded")
    return "Content-Type application/x-www-form-urlencoded (curl's default for --data-binary): "
           "send the image with -H 'Content-Type: image/png' (or image/jpeg, image/tiff, "
           "application/octet-stream)";
  if (type == "multipart/form-data")
    return "Content-Type multipart/form-data: send the image file itself as the body";
  return "Content-Type " + type + " is not a PNG, JPEG or TIFF image";
}

void check_options(const ServeOptions& options) {
  if (options.port < 0 || options.port > 65535)
    throw Error::option("port", std::to_string(options.port) + " is not in 0..65535");
  if (options.workers < 1)
    throw Error::option("workers", std::to_string(options.workers) + " must be at least 1");
  if (options.max_queue < 0)
    throw Error::option("max_queue", std::to_string(options.max_queue) + " must be 0 or more");
  if (options.max_pixels < 1)
    throw Error::option("max_pixels", std::to_string(options.max_pixels) + " must be positive");
  if (options.max_body_bytes < 1)
    throw Error::option("max_body_bytes",
                        std::to_string(options.max_body_bytes) + " must be positive");
  if (options.retry_after_s < 0 || options.keep_alive_s < 1)
    throw Error::option("retry_after_s/keep_alive_s", "must be >= 0 and >= 1");
}

}  // namespace

struct TranslationServer::State {
  std::shared_ptr<Generator> generator;
  Translator translator;
  ServeOptions options;
  AdmissionGate gate;
  // Train mode swaps the model's statistics and bf16 layers fill their weight caches lazily:
  // both translate one image at a time.
  std::mutex one_at_a_time_mutex;
  bool one_at_a_time;
  std::mutex log_mutex;
  httplib::Server http;
  int port = 0;

  State(std::shared_ptr<Generator> generator_, const TranslateOptions& translate,
        const ServeOptions& options_)
      : generator(generator_),
        translator(generator_, translate),
        options(options_),
        gate(one_at_a_time_for(translate, options_) ? 1 : options_.workers, options_.max_queue),
        one_at_a_time(one_at_a_time_for(translate, options_)) {}

  static bool one_at_a_time_for(const TranslateOptions& translate, const ServeOptions& options) {
    return translate.train_mode || options.precision != "fp32";
  }

  void log(const std::string& line) {
    if (!options.log) return;
    std::lock_guard<std::mutex> lock(log_mutex);
    options.log(line);
  }

  // decode -> translate -> encode, as `pix2pix translate` does for a file.
  std::string translate(const std::string& bytes, const std::string& name) {
    std::unique_lock<std::mutex> lock(one_at_a_time_mutex, std::defer_lock);
    if (one_at_a_time) lock.lock();
    ReadOptions read_options;
    read_options.channels = static_cast<int>(generator->options().input_nc);
    read_options.max_pixels = options.max_pixels;
    const Image image = decode_image(bytes, name, read_options);
    return encode_png(tensor_to_image(translator.translate_tensor(image_to_tensor(image), name)));
  }

  void handle_translate(const httplib::Request& req, httplib::Response& res);
};

TranslationServer::TranslationServer(std::shared_ptr<Generator> generator,
                                     const TranslateOptions& translate,
                                     const ServeOptions& options) {
  if (!generator) throw Error::option("generator", "no generator given");
  check_options(options);
  share_main_heap();  // connection threads run the network: keep its buffers in the heap
  // Concurrent eval-mode translations need a generator that is in eval mode before they start
  // (Translator then leaves its state alone).
  if (!translate.train_mode) generator->eval();
  state_ = std::make_unique<State>(std::move(generator), translate, options);
  // Tile and overlap flags that cannot fit the generator fail now, not on the first request.
  const int64_t multiple = state_->generator->size_multiple();
  state_->translator.plan(int(multiple), int(multiple), "serve");
  State& state = *state_;
  httplib::Server& http = state.http;

  // Enough threads for every running and waiting translation plus a few for quick answers
  // (health, page, 503s); connections beyond that wait in httplib's queue.
  const size_t threads = size_t(options.workers + options.max_queue + 4);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(size_t(options.max_body_bytes));
  http.set_keep_alive_timeout(options.keep_alive_s);
  // Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
  // client's delayed ACK held each answer back ~40 ms.
  http.set_tcp_nodelay(true);

  http.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    request_start = Clock::now();
    request_started = true;
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // httplib's own errors (unknown path 404, oversized body 413, ...) come without a body: name
  // the problem in JSON as every other error does.
  const httplib::Server::HandlerWithResponse on_error =
      [max_body = options.max_body_bytes](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string message = fmt::format("HTTP error {}", res.status);
        if (res.status == 400 || res.status == 413) {
          // httplib refuses a multipart body it cannot parse, and a form body over 8 KB, before
          // our handler sees it.
          const std::string refused = refuse_content_type(req.get_header_value("Content-Type"));
          if (!refused.empty()) {
            answer_error(res, 415, refused);
            return httplib::Server::HandlerResponse::Handled;
          }
          message = "malformed request";
        }
        if (res.status == 413)
          message =
              fmt::format("request body over the limit of {} bytes (`max_body_bytes`)", max_body);
        if (res.status == 404) message = "no such endpoint: " + req.method + " " + req.path;
        answer_error(res, res.status, message);
        return httplib::Server::HandlerResponse::Handled;
      };
  http.set_error_handler(on_error);
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          answer_error(res, 500, std::string("internal error: ") + e.what());
        } catch (...) {
          answer_error(res, 500, "internal error");
        }
      });
  http.set_logger([&state](const httplib::Request& req, const httplib::Response& res) {
    const std::string ms =
        request_started
            ? fmt::format(
                  "{:.1f} ms",
                  std::chrono::duration<double, std::milli>(Clock::now() - request_start).count())
            : "- ms";
    request_started = false;
    state.log(fmt::format("{} {} {} in={} out={} {}", req.method, req.path, res.status,
                          req.body.size(), res.body.size(), ms));
  });

  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  http.Get("/v1/model", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(model_json(), "application/json");
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(serve_page_html(), "text/html; charset=utf-8");
  });
  http.Post("/v1/translate", [&state](const httplib::Request& req, httplib::Response& res) {
    state.handle_translate(req, res);
  });
}

TranslationServer::~TranslationServer() = default;

void TranslationServer::State::handle_translate(const httplib::Request& req,
                                                httplib::Response& res) {
  const std::string name = "body";
  const std::string refused = refuse_content_type(req.get_header_value("Content-Type"));
  if (!refused.empty()) return answer_error(res, 415, refused);
  if (req.body.empty())
    return answer_error(res, 400, "empty body: send one PNG, JPEG or TIFF image as the body");
  try {
    detect_image_format(req.body, name);
  } catch (const Error& e) {
    return answer_error(res, 415, e.what());
  }
  if (!gate.enter()) {
    res.set_header("Retry-After", std::to_string(options.retry_after_s));
    return answer_error(res, 503,
                        fmt::format("busy: {} translations running and {} waiting; retry later",
                                    options.workers, options.max_queue));
  }
  struct Leave {
    AdmissionGate& gate;
    ~Leave() { gate.leave(); }
  } leave{gate};
  std::string png;
  try {
    png = translate(req.body, name);
  } catch (const Error& e) {
    // The decoder names its own limit; that one is "too large", every other input error is a
    // bad image.
    const std::string message = e.what();
    const bool too_many_pixels = message.find("max_pixels") != std::string::npos;
    if (e.kind() != ErrorKind::kInput) return answer_error(res, 500, message);
    if (!too_many_pixels) return answer_error(res, 400, message);
    return answer_error(res, 413,
                        message.substr(0, message.find(" (")) + " (ServeOptions::max_pixels)");
  }
  res.set_content(png, "image/png");
}

int TranslationServer::bind() {
  State& state = *state_;
  const int port =
      state.options.port == 0
          ? state.http.bind_to_any_port(state.options.host)
          : (state.http.bind_to_port(state.options.host, state.options.port) ? state.options.port
                                                                             : -1);
  if (port < 0)
    throw Error(fmt::format("{}:{}", state.options.host, state.options.port),
                "cannot listen there (address in use, or not an address of this machine)",
                ErrorKind::kRuntime);
  state.port = port;
  return port;
}

void TranslationServer::serve() {
  if (state_->port == 0) throw Error("serve", "call bind() before serve()", ErrorKind::kRuntime);
  state_->http.listen_after_bind();
}

void TranslationServer::stop() { state_->http.stop(); }

int TranslationServer::port() const { return state_->port; }

std::string TranslationServer::model_json() const {
  const GeneratorOptions& net = state_->generator->options();
  const TranslateOptions& translate = state_->translator.options();
  Json json;
  json["architecture"] = {
      {"netG", net.net},
      {"ngf", net.ngf},
      {"num_downs", net.num_downs},
      {"norm", names<Norm>()[static_cast<size_t>(net.norm)]},
      {"dropout", net.dropout},
      {"upsampling", names<Upsampling>()[static_cast<size_t>(net.upsampling)]},
  };
  json["direction"] = state_->options.direction.empty() ? Json() : Json(state_->options.direction);
  json["channels"] = {{"input", net.input_nc}, {"output", net.output_nc}};
  json["size_multiple"] = state_->generator->size_multiple();
  json["mode"] = translate.train_mode ? "train" : "eval";
  json["precision"] = state_->options.precision;
  json["tile"] = translate.tile;
  json["tile_max_pixels"] = translate.max_pixels;
  json["limits"] = {{"max_pixels", state_->options.max_pixels},
                    {"max_body_bytes", state_->options.max_body_bytes},
                    {"workers", state_->options.workers},
                    {"max_queue", state_->options.max_queue}};
  return json.dump();
}

std::string TranslationServer::translate_bytes(const std::string& bytes,
                                               const std::string& name) const {
  return state_->translate(bytes, name);
}

}  // namespace pix2pix
