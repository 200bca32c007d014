// An HTTP server around one trained generator (`pix2pix serve`): POST an image, get back the PNG
// `pix2pix translate` would write for it, byte for byte. Endpoints: GET /healthz, GET /v1/model,
// POST /v1/translate and GET / (a self-contained page that calls the API). Built on cpp-httplib;
// the API and its limits are described in docs/serve.md. To add an endpoint: register it in
// TranslationServer's constructor (src/tools/server.cpp) and describe it in docs/serve.md.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "pix2pix/infer/translator.h"
#include "pix2pix/io/image_io.h"

namespace pix2pix {

/// Where and how the server listens, and what it accepts.
struct ServeOptions {
  std::string host = "127.0.0.1";  ///< address to bind; 0.0.0.0 for every interface
  int port = 8080;                 ///< TCP port; 0: any free port (TranslationServer::port())
  /// Translations that run at once. Each already uses all intra-op threads, so more than one
  /// helps only when the cores are not saturated (small images, many cores).
  int workers = 1;
  /// Translations that may wait for a worker; a request beyond this bound is answered 503 with
  /// Retry-After at once instead of waiting.
  int max_queue = 16;
  /// Largest accepted image, in pixels (width * height, as ReadOptions::max_pixels); larger
  /// uploads are answered 413 before any pixel memory is allocated. Must be positive.
  int64_t max_pixels = int64_t{1} << 24;
  /// Largest accepted request body in bytes; larger bodies are answered 413. Must be positive.
  int64_t max_body_bytes = int64_t{32} << 20;
  /// Seconds a 503 answer asks the client to wait (its Retry-After header).
  int retry_after_s = 1;
  /// Seconds an idle keep-alive connection is kept open (also bounds how long a stop waits for
  /// idle connections).
  int keep_alive_s = 2;
  /// What GET /v1/model reports besides the generator's own options: the run's direction
  /// ("AtoB"/"BtoA"; empty: unknown) and the compute precision ("fp32"/"bf16").
  std::string direction;
  std::string precision = "fp32";
  /// Receives one line per request ("POST /v1/translate 200 in=1234 out=5678 41.2 ms") and the
  /// server's own notes; called from the connection threads, one call at a time. Null: silent.
  std::function<void(const std::string&)> log;
};

/// Serves one generator over HTTP until stop() is called. The generator is shared by the
/// workers: in eval mode translations run concurrently; in train mode (which swaps the model's
/// batch-norm statistics for the duration of a translation) they run one at a time.
class TranslationServer {
 public:
  /// Checks the options (pix2pix::Error naming the field, e.g. `workers`) and the translate
  /// options against the generator; listens only once bind() is called. Calls
  /// share_main_heap() (threads.h): process-wide, so that connection threads translate as fast
  /// as the main thread.
  TranslationServer(std::shared_ptr<Generator> generator, const TranslateOptions& translate,
                    const ServeOptions& options);
  ~TranslationServer();
  TranslationServer(const TranslationServer&) = delete;
  TranslationServer& operator=(const TranslationServer&) = delete;

  /// Binds host:port and returns the bound port (the chosen one for port 0). Throws
  /// pix2pix::Error(ErrorKind::kRuntime) when the address cannot be bound.
  int bind();
  /// Accepts and answers requests until stop(); then returns once the requests in flight are
  /// answered (idle keep-alive connections close within keep_alive_s). Call bind() first.
  void serve();
  /// Stops accepting connections and makes serve() return after the requests in flight finish.
  /// Safe from any thread (not from a signal handler: use sigwait in a thread).
  void stop();
  /// The bound port (0 before bind()).
  int port() const;

  /// The JSON GET /v1/model answers.
  std::string model_json() const;
  /// The PNG bytes POST /v1/translate answers for an encoded image: decode_image (channels
  /// converted to the generator's input_nc, options' max_pixels), Translator::translate_tensor,
  /// encode_png: what `pix2pix translate` writes for the same file. Throws pix2pix::Error naming
  /// `name` for bad input.
  std::string translate_bytes(const std::string& bytes, const std::string& name) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// The page GET / answers: HTML with its script and style inline (no external resources).
const std::string& serve_page_html();

}  // namespace pix2pix
