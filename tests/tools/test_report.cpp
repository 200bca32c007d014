// The run report: charts drawn from metrics.jsonl (one point per row, inside the plot, smoothed
// curve), samples embedded as data URIs that decode to the files' bytes, non-default options
// highlighted, test results linked, atomic writes, errors; the page rendered by headless
// Chromium (skipped without it); `pix2pix report`.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"
#include "pix2pix/tools/report.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// A decoder independent of the report's encoder.
std::string base64_decode(const std::string& text) {
  std::string out;
  int value = 0, bits = -8;
  for (char c : text) {
    int digit;
    if (c >= 'A' && c <= 'Z')
      digit = c - 'A';
    else if (c >= 'a' && c <= 'z')
      digit = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      digit = c - '0' + 52;
    else if (c == '+')
      digit = 62;
    else if (c == '/')
      digit = 63;
    else
      break;  // '=' padding
    value = (value << 6) | digit;
    bits += 6;
    if (bits >= 0) {
      out += static_cast<char>((value >> bits) & 0xff);
      bits -= 8;
    }
  }
  return out;
}

// A strip like the trainer's: three w x w panels, coloured so a screenshot shows them.
Image strip(int w, uint8_t shade) {
  Image image(3 * w, w, 3);
  for (int y = 0; y < w; ++y)
    for (int x = 0; x < 3 * w; ++x) {
      image.at<uint8_t>(y, x, 0) = static_cast<uint8_t>(x * 255 / (3 * w));
      image.at<uint8_t>(y, x, 1) = shade;
      image.at<uint8_t>(y, x, 2) = static_cast<uint8_t>(y * 255 / w);
    }
  return image;
}

constexpr int kTrainRows = 30;

// A run directory as the trainer writes it: 3 epochs of 10 rows (steps 10..300), a val row per
// epoch plus one before training, epoch samples and step samples, a test results folder.
std::string fake_run(const std::string& dir) {
  const std::string run = dir + "/runs/facades";
  Json options{{"options",
                {{"name", "facades"},
                 {"netG", "unet_256"},
                 {"netD", "basic"},
                 {"ngf", 32},
                 {"norm", "batch"},
                 {"lr", 0.0002},
                 {"crop_size", "256"},
                 {"batch_size", 1}}},
               {"non_defaults", {"ngf"}}};
  write_file(run + "/options.json", options.dump(2));
  write_file(run + "/model.txt", "generator unet_256: 54413955 parameters <&>\n");
  std::string metrics;
  metrics +=
      Json{{"kind", "val"}, {"epoch", 0}, {"step", 0}, {"val_L1", 0.9}, {"val_PSNR", 7.0}}.dump() +
      "\n";
  for (int i = 1; i <= kTrainRows; ++i) {
    const int epoch = (i - 1) / 10 + 1;
    metrics += Json{{"kind", "train"},
                    {"epoch", epoch},
                    {"step", 10 * i},
                    {"epoch_step", 10 * ((i - 1) % 10 + 1)},
                    {"G_GAN", 0.7 + 0.01 * (i % 3)},
                    {"G_L1", 0.5 / i},
                    {"D_real", 0.6},
                    {"D_fake", 0.65},
                    {"D_acc_real", 0.5},
                    {"D_acc_fake", 0.55},
                    {"GP", 0.0},
                    {"lr", 0.0002},
                    {"step_s", 0.5},
                    {"data_s", 0.01}}
                   .dump() +
               "\n";
    if (i % 10 == 0)
      metrics += Json{{"kind", "val"},
                      {"epoch", epoch},
                      {"step", 10 * i},
                      {"val_L1", 0.3 / epoch},
                      {"val_PSNR", 15.0 + epoch}}
                     .dump() +
                 "\n";
  }
  metrics += "{\"kind\": \"train\", \"ep";  // a row being written: skipped
  write_file(run + "/metrics.jsonl", metrics);
  for (int epoch = 0; epoch <= 3; ++epoch)
    test::put_image(run, fmt::format("samples/epoch{:03d}.png", epoch),
                    strip(32, static_cast<uint8_t>(60 * epoch)));
  for (int step : {100, 200, 300})
    test::put_image(run, fmt::format("samples/step{:07d}.png", step), strip(32, 200));
  write_file(run + "/results/test_latest/index.html", "<html></html>");
  write_file(run + "/results/test_latest/summary.json",
             Json{{"mean", {{"l1", 0.25}, {"psnr", 17.5}}}}.dump());
  return run;
}

// Points of the polyline of `series` (kind raw or smoothed) in the page, parsed.
std::vector<std::pair<double, double>> polyline(const std::string& html, const std::string& series,
                                                const std::string& kind) {
  const std::regex pattern("<polyline data-series=\"" + series + "\" data-kind=\"" + kind +
                           "\" points=\"([^\"]*)\"");
  std::smatch match;
  std::vector<std::pair<double, double>> points;
  if (!std::regex_search(html, match, pattern)) return points;
  std::istringstream in(match[1].str());
  std::string pair;
  while (in >> pair) {
    const size_t comma = pair.find(',');
    points.emplace_back(std::stod(pair.substr(0, comma)), std::stod(pair.substr(comma + 1)));
  }
  return points;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

TEST(Report, DrawsEveryChartFromTheMetrics) {
  const std::string run = fake_run(test::temp_dir());
  const std::string html = render_report(run);
  // G GAN, G L1 + val L1, D losses, D accuracy, lr, val L1, val PSNR, timing (GP is all 0).
  EXPECT_EQ(count(html, "<svg"), 8u);
  EXPECT_EQ(count(html, "</svg>"), 8u);
  EXPECT_EQ(html.find("Gradient penalty"), std::string::npos);
  for (const std::string title :
       {"Generator: GAN loss", "Discriminator losses", "Discriminator accuracy",
        "Learning rate (G)", "Validation L1", "Validation PSNR", "Seconds per step"})
    EXPECT_NE(html.find(">" + title + "<"), std::string::npos) << title;
  EXPECT_NE(html.find(">step<"), std::string::npos);  // the x axis label

  // One point per row, inside the 560 x 280 view box, x increasing with the step.
  for (const std::string series : {"G_GAN", "G_L1", "D_real", "D_fake", "D_acc_real", "lr"}) {
    const auto raw = polyline(html, series, "raw");
    ASSERT_EQ(raw.size(), static_cast<size_t>(kTrainRows)) << series;
    for (size_t i = 0; i < raw.size(); ++i) {
      EXPECT_GE(raw[i].first, 0);
      EXPECT_LE(raw[i].first, 560);
      EXPECT_GE(raw[i].second, 0);
      EXPECT_LE(raw[i].second, 280);
      if (i > 0) {
        EXPECT_GT(raw[i].first, raw[i - 1].first) << series;
      }
    }
    EXPECT_EQ(polyline(html, series, "smoothed").size(), raw.size()) << series;
  }
  // G_L1 falls (0.5 / i): y in SVG grows downwards. Equal spacing in steps: equal spacing in x.
  const auto l1 = polyline(html, "G_L1", "raw");
  EXPECT_LT(l1.front().second, l1.back().second);
  EXPECT_NEAR(l1[1].first - l1[0].first, l1[29].first - l1[28].first, 0.02);
  // The debiased average starts at the first value and lags behind a falling series.
  const auto smoothed = polyline(html, "G_L1", "smoothed");
  EXPECT_NEAR(smoothed.front().second, l1.front().second, 0.01);
  EXPECT_LT(smoothed[5].second, l1[5].second);
  // Validation: 4 rows (before training and after each epoch), drawn with dots, not smoothed.
  EXPECT_EQ(polyline(html, "val_PSNR", "raw").size(), 4u);
  EXPECT_TRUE(polyline(html, "val_PSNR", "smoothed").empty());
  EXPECT_EQ(count(html, "data-series=\"val_L1\" data-kind=\"raw\""), 2u);  // own chart + L1 chart
}

TEST(Report, EmbedsTheSamplesAndLinksTheRest) {
  const std::string run = fake_run(test::temp_dir());
  ReportOptions options;
  options.max_embedded_epochs = 3;  // of 4 epochs (0..3): 0, 2 (rounded from 1.5), 3
  options.latest_samples = 1;
  const std::string html = render_report(run, options);
  const std::regex image(
      "<img class=\"sample\" src=\"data:image/png;base64,([^\"]*)\" alt=\"([^\"]*)\"");
  std::set<std::string> alts;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), image);
       it != std::sregex_iterator(); ++it) {
    const std::string alt = (*it)[2].str();
    alts.insert(alt);
    const std::string file = alt.rfind("epoch ", 0) == 0
                                 ? fmt::format("/samples/epoch{:03d}.png", std::stoi(alt.substr(6)))
                                 : fmt::format("/samples/step{:07d}.png", std::stoi(alt.substr(5)));
    EXPECT_EQ(base64_decode((*it)[1].str()), read_file(run + file)) << alt;
  }
  EXPECT_EQ(alts, (std::set<std::string>{"epoch 0", "epoch 2", "epoch 3", "step 300"}));
  EXPECT_NE(html.find("<a href=\"samples/epoch001.png\">1</a>"), std::string::npos);
  EXPECT_NE(html.find("input</span><span>output</span><span>target"), std::string::npos);

  // Past the byte budget, images are linked by relative path instead of embedded.
  options.max_embedded_bytes = 0;
  const std::string linked = render_report(run, options);
  EXPECT_EQ(linked.find("data:image/png"), std::string::npos);
  EXPECT_NE(linked.find("src=\"samples/epoch003.png\""), std::string::npos);
}

TEST(Report, ShowsOptionsModelAndResults) {
  const std::string run = fake_run(test::temp_dir());
  const std::string html = render_report(run);
  EXPECT_NE(html.find("<tr class=\"nd\"><td>ngf</td><td>32</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<tr><td>netG</td><td>unet_256</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("54413955 parameters &lt;&amp;&gt;"), std::string::npos);  // escaped
  EXPECT_NE(html.find("<a href=\"results/test_latest/index.html\">test_latest</a>"),
            std::string::npos);
  EXPECT_NE(html.find("l1 0.25"), std::string::npos);
  EXPECT_NE(html.find("L1 0.1000, PSNR 18.00 dB (epoch 3)"), std::string::npos);
  EXPECT_NE(html.find("L1 0.9000 (epoch 0, step 0)"), std::string::npos);
  EXPECT_NE(html.find("2 min 33 s"), std::string::npos);  // 300 steps x 0.51 s
  // Nothing fetched from anywhere: no scripts, no external URLs.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
}

TEST(Report, WritesAtomicallyAndRefusesANonRun) {
  const std::string dir = test::temp_dir();
  const std::string run = fake_run(dir);
  write_file(run + "/report.html", "old");
  EXPECT_EQ(write_report(run), run + "/report.html");
  EXPECT_NE(read_file(run + "/report.html").find("<svg"), std::string::npos);
  for (const auto& entry : fs::directory_iterator(run))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  EXPECT_THROW(render_report(dir + "/missing"), Error);
  fs::create_directories(dir + "/empty");
  try {
    render_report(dir + "/empty");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a run directory"), std::string::npos) << e.what();
  }
  write_file(dir + "/bad/options.json", "{\"x\": 1}");
  EXPECT_THROW(render_report(dir + "/bad"), Error);
}

TEST(Report, ARunWithoutRowsYetStillRenders) {
  const std::string dir = test::temp_dir();
  write_file(dir + "/run/options.json", Json{{"options", Json::object()}}.dump());
  write_file(dir + "/run/metrics.jsonl", "");
  const std::string html = render_report(dir + "/run");
  EXPECT_NE(html.find("no data yet"), std::string::npos);
  EXPECT_NE(html.find("no samples yet"), std::string::npos);
}

TEST(Report, CliRewritesTheReport) {
  const std::string run = fake_run(test::temp_dir());
  test::CommandResult result = test::run_cli("report " + test::shell_quote(run) + " --max-mb 0");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find(run + "/report.html"), std::string::npos) << result.output;
  EXPECT_EQ(read_file(run + "/report.html").find("data:image/png"), std::string::npos);
  result = test::run_cli("report " + test::shell_quote(run + "/nope"));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find(run + "/nope"), std::string::npos) << result.output;
  result = test::run_cli("report " + test::shell_quote(run) + " --smoothing 1.5");
  EXPECT_EQ(result.exit_code, 2) << result.output;
}

// Headless Chromium loads the page offline: the DOM it built has the charts and their points,
// and the screenshot shows them (chart colours present, not a blank page).
TEST(Report, RendersInHeadlessChromium) {
  if (!test::required(test::run_command("command -v chromium >/dev/null").exit_code == 0,
                      "chromium"))
    GTEST_SKIP() << "chromium is not installed (scripts/setup.sh installs it)";
  const std::string dir = test::temp_dir();
  const std::string run = fake_run(dir);
  const std::string page = write_report(run);
  const std::string flags =
      "--headless --no-sandbox --disable-gpu --disable-background-networking "
      "--disable-extensions --no-first-run --hide-scrollbars --user-data-dir=" +
      test::shell_quote(dir + "/profile") + " ";
  const std::string url = test::shell_quote("file://" + fs::absolute(page).string());
  const test::CommandResult dom =
      test::run_command("timeout 120 chromium " + flags + "--dump-dom " + url + " 2>/dev/null");
  ASSERT_EQ(dom.exit_code, 0) << dom.output;
  EXPECT_EQ(count(dom.output, "<svg"), 8u);
  EXPECT_EQ(polyline(dom.output, "G_GAN", "raw").size(), static_cast<size_t>(kTrainRows));

  const std::string shot = dir + "/report.png";
  const test::CommandResult capture =
      test::run_command("timeout 120 chromium " + flags + "--window-size=1280,1600 --screenshot=" +
                        test::shell_quote(shot) + " " + url + " 2>&1");
  ASSERT_TRUE(fs::exists(shot)) << capture.output;
  const Image image = convert_channels(read_image(shot), 3);
  EXPECT_EQ(image.width, 1280);
  EXPECT_EQ(image.height, 1600);
  size_t non_white = 0, blue = 0, red = 0;
  std::set<uint32_t> colours;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x) {
      const int r = image.at<uint8_t>(y, x, 0), g = image.at<uint8_t>(y, x, 1),
                b = image.at<uint8_t>(y, x, 2);
      non_white += r < 240 || g < 240 || b < 240;
      colours.insert(uint32_t(r) << 16 | uint32_t(g) << 8 | uint32_t(b));
      // The G_GAN curve (#1f77b4) and the D_fake curve (#d62728), antialiased.
      blue += std::abs(r - 0x1f) < 24 && std::abs(g - 0x77) < 24 && std::abs(b - 0xb4) < 24;
      red += std::abs(r - 0xd6) < 24 && std::abs(g - 0x27) < 24 && std::abs(b - 0x28) < 24;
    }
  const double pixels = double(image.width) * image.height;
  EXPECT_GT(non_white / pixels, 0.02) << "a blank page";
  EXPECT_GT(colours.size(), 200u);
  EXPECT_GT(blue, 100u) << "no G_GAN curve on screen";
  EXPECT_GT(red, 100u) << "no D_fake curve on screen";
}

}  // namespace
}  // namespace pix2pix
