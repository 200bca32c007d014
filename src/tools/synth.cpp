// The synthetic facades dataset: a random layout (a list of class rectangles drawn in order) is
// rasterised into a class map, which gives the label image directly and drives a per-class shader
// for the photo. The photo depends on the layout in ways a convolutional network can learn
// (textures per class, frames and mullions inside windows, shadows under protruding elements, a
// lighting gradient) and on per-image style draws it cannot see in the label (colours, lighting,
// noise), which is what makes the translation conditional rather than a lookup table.
#include "pix2pix/tools/synth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"

namespace pix2pix {

namespace {

namespace fs = std::filesystem;

constexpr double kPi = 3.14159265358979323846;

// ---------------------------------------------------------------------------------------------
// Random numbers: the library's portable generator (SplitMix64, transforms.h) and our own mapping
// from raw draws to ranges, so a seed gives the same dataset with any standard library
// (std::*_distribution are implementation-defined).

class Rng {
 public:
  explicit Rng(uint64_t seed) : bits_(seed) {}
  uint64_t next() { return bits_.next(); }
  /// Uniform in [0, 1).
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [lo, hi] (hi >= lo).
  int range(int lo, int hi) {
    const uint64_t span = uint64_t(int64_t(hi) - int64_t(lo) + 1);
    return lo + int(((next() >> 32) * span) >> 32);
  }
  bool chance(double p) { return uniform() < p; }

 private:
  SplitMix64 bits_;
};

// Per-pixel texture randomness: a hash of integer coordinates, so textures need no state.
inline uint32_t hash3(int32_t x, int32_t y, uint32_t seed) {
  uint32_t h = seed ^ (uint32_t(x) * 0x27D4EB2DU) ^ (uint32_t(y) * 0x165667B1U);
  h ^= h >> 15;
  h *= 0x2C1B3C6DU;
  h ^= h >> 12;
  h *= 0x297A2D39U;
  h ^= h >> 15;
  return h;
}

inline float hash01(int32_t x, int32_t y, uint32_t seed) {
  return float(hash3(x, y, seed) >> 8) * (1.0f / 16777216.0f);
}

// Smooth value noise in [0, 1] with features about one unit apart.
float value_noise(float x, float y, uint32_t seed) {
  const float fx = std::floor(x), fy = std::floor(y);
  const int32_t ix = int32_t(fx), iy = int32_t(fy);
  float tx = x - fx, ty = y - fy;
  tx = tx * tx * (3 - 2 * tx);
  ty = ty * ty * (3 - 2 * ty);
  const float a = hash01(ix, iy, seed), b = hash01(ix + 1, iy, seed);
  const float c = hash01(ix, iy + 1, seed), d = hash01(ix + 1, iy + 1, seed);
  return (a + (b - a) * tx) + ((c + (d - c) * tx) - (a + (b - a) * tx)) * ty;
}

// ---------------------------------------------------------------------------------------------
// Colours.

struct Vec3 {
  float r = 0, g = 0, b = 0;
};
inline Vec3 operator*(Vec3 a, float s) { return {a.r * s, a.g * s, a.b * s}; }
inline Vec3 operator*(Vec3 a, Vec3 b) { return {a.r * b.r, a.g * b.g, a.b * b.b}; }
inline Vec3 operator+(Vec3 a, Vec3 b) { return {a.r + b.r, a.g + b.g, a.b + b.b}; }
inline Vec3 mix(Vec3 a, Vec3 b, float t) { return a * (1 - t) + b * t; }

Vec3 jitter(Rng& rng, Vec3 c, float amount) {
  return {float(c.r + rng.uniform(-amount, amount)), float(c.g + rng.uniform(-amount, amount)),
          float(c.b + rng.uniform(-amount, amount))};
}

template <size_t N>
Vec3 pick(Rng& rng, const Vec3 (&choices)[N]) {
  return choices[rng.range(0, int(N) - 1)];
}

// ---------------------------------------------------------------------------------------------
// Layout: rectangles of one class each, drawn in order (later ones cover earlier ones).

struct Element {
  int x0, y0, x1, y1;  // half-open, clipped to the image
  SynthClass label;
  float jitter[3];  // per-element variation for the shader (glass tint, reflection phase, ...)
};

struct Layout {
  int size = 0;
  int bx0 = 0, bx1 = 0, by0 = 0, by1 = 0;  // the building
  std::vector<Element> elements;           // elements[0] is the wall
};

void add(Layout& layout, Rng& rng, SynthClass label, int x0, int y0, int x1, int y1) {
  const int s = layout.size;
  x0 = std::clamp(x0, 0, s);
  x1 = std::clamp(x1, 0, s);
  y0 = std::clamp(y0, 0, s);
  y1 = std::clamp(y1, 0, s);
  Element e{x0, y0,    x1,
            y1, label, {float(rng.uniform()), float(rng.uniform()), float(rng.uniform())}};
  if (x1 > x0 && y1 > y0) layout.elements.push_back(e);
}

// A facade's outline and window grid, and the draws every floor shares.
struct Facade {
  double s = 0;                            // the image side
  int bx0 = 0, bx1 = 0, by0 = 0, by1 = 0;  // the building
  int top = 0, floors_bottom = 0, shop_top = 0;
  bool shop = false;
  int columns = 0, floors = 0;
  double column_width = 0, floor_height = 0;
  int blinds = 0, window_w = 0, window_h = 0, window_top = 0;
  int balconies = 0, balcony_pattern = 0, deco = 0, door_column = 0;
  bool sills = false, pillars = false, string_courses = false;

  int px(double fraction) const { return int(std::lround(fraction * s)); }
  int column_x(int c) const { return bx0 + int(std::lround(c * column_width)); }
  int floor_y(int f) const { return top + int(std::lround(f * floor_height)); }
};

// Building outline (background margins for sky, neighbours and street), roof cornice and attic,
// and the ground level: a shop front under a moulding, or an ordinary floor with the door.
Facade add_outline(Layout& layout, Rng& rng, int size) {
  Facade f;
  f.s = size;
  const int margin_left = rng.chance(0.65) ? f.px(rng.uniform(0.01, 0.09)) : 0;
  const int margin_right = rng.chance(0.65) ? f.px(rng.uniform(0.01, 0.09)) : 0;
  const int sky = rng.chance(0.8) ? f.px(rng.uniform(0.02, 0.14)) : 0;
  const int street = rng.chance(0.3) ? f.px(rng.uniform(0.015, 0.05)) : 0;
  f.bx0 = margin_left, f.bx1 = size - margin_right, f.by0 = sky, f.by1 = size - street;
  layout.bx0 = f.bx0, layout.bx1 = f.bx1, layout.by0 = f.by0, layout.by1 = f.by1;
  add(layout, rng, SynthClass::kWall, f.bx0, f.by0, f.bx1, f.by1);

  f.top = f.by0;
  if (sky > 0 || rng.chance(0.5)) {
    const int cornice = std::max(2, f.px(rng.uniform(0.02, 0.045)));
    const int overhang = f.px(rng.uniform(0.0, 0.015));
    add(layout, rng, SynthClass::kCornice, f.bx0 - overhang, f.by0, f.bx1 + overhang,
        f.by0 + cornice);
    f.top += cornice;
  }
  f.top += f.px(rng.uniform(0.01, 0.06));

  f.shop = rng.chance(0.45);
  f.floors_bottom = f.shop_top = f.by1;
  if (f.shop) {
    f.shop_top = f.by1 - int(std::lround((f.by1 - f.by0) * rng.uniform(0.17, 0.25)));
    const int moulding = std::max(2, f.px(rng.uniform(0.012, 0.025)));
    f.floors_bottom = f.shop_top - moulding;
    add(layout, rng, SynthClass::kCornice, f.bx0, f.floors_bottom, f.bx1, f.shop_top);
  }
  return f;
}

// The window grid and the style of its windows, the same on every floor.
void draw_grid(Facade& f, Rng& rng) {
  const int min_cell = std::max(8, f.px(0.1));
  f.columns = rng.range(2, std::max(2, std::min(6, (f.bx1 - f.bx0) / min_cell)));
  const int region = f.floors_bottom - f.top;
  const int min_floors = f.shop ? 2 : 3;  // every window column keeps two windows above the door
  f.floors =
      rng.range(min_floors, std::max(min_floors, std::min(6, region / std::max(8, f.px(0.1)))));
  f.column_width = double(f.bx1 - f.bx0) / f.columns;
  f.floor_height = double(region) / f.floors;

  const double blind_draw = rng.uniform();
  f.blinds = blind_draw < 0.5 ? 0 : blind_draw < 0.8 ? 1 : 2;  // none, shutters, roller
  f.window_w = std::max(
      3, int(std::lround(f.column_width * rng.uniform(0.35, f.blinds == 1 ? 0.45 : 0.62))));
  f.window_h = std::max(3, int(std::lround(f.floor_height * rng.uniform(0.45, 0.72))));
  f.window_top = int(std::lround((f.floor_height - f.window_h) * rng.uniform(0.3, 0.55)));
  const double balcony_draw = rng.uniform();
  f.balconies = balcony_draw < 0.55 ? 0 : balcony_draw < 0.8 ? 1 : 2;  // none, each, floor
  const double pattern_draw = rng.uniform();
  f.balcony_pattern = pattern_draw < 0.4 ? 0 : pattern_draw < 0.7 ? 1 : 2;  // all, odd, any
  f.sills = rng.chance(0.7);
  const double deco_draw = rng.uniform();
  f.deco = deco_draw < 0.55 ? 0 : deco_draw < 0.8 ? 1 : 2;  // none, lintel, pediment
  f.pillars = rng.chance(0.2);
  f.string_courses = rng.chance(0.35);
  f.door_column =
      (f.columns % 2 == 1 && rng.chance(0.6)) ? f.columns / 2 : rng.range(0, f.columns - 1);
}

// String courses between floors, pillars between columns and the shop front with its door.
void add_structure(Layout& layout, Rng& rng, const Facade& f) {
  if (f.string_courses) {
    const int course = std::max(1, f.px(0.008));
    for (int floor = 1; floor < f.floors; ++floor)
      add(layout, rng, SynthClass::kCornice, f.bx0, f.floor_y(floor), f.bx1,
          f.floor_y(floor) + course);
  }
  if (f.pillars) {
    const int pillar_w = std::max(2, int(std::lround(f.column_width * 0.1)));
    const int pillars_bottom = f.shop ? f.floors_bottom : f.floor_y(f.floors - 1);
    for (int c = 1; c < f.columns; ++c)
      add(layout, rng, SynthClass::kPillar, f.column_x(c) - pillar_w / 2, f.top,
          f.column_x(c) - pillar_w / 2 + pillar_w, pillars_bottom);
  }
  if (!f.shop) return;
  const int shop_y0 = f.shop_top + int(std::lround((f.by1 - f.shop_top) * rng.uniform(0.06, 0.2)));
  const double inset = rng.uniform(0.04, 0.12);
  for (int c = 0; c < f.columns; ++c) {
    const int x0 = f.column_x(c), x1 = f.column_x(c + 1);
    const int pad = int(std::lround((x1 - x0) * inset));
    if (c == f.door_column) {
      const int door_w = std::max(4, int(std::lround((x1 - x0) * rng.uniform(0.35, 0.6))));
      const int door_x = (x0 + x1 - door_w) / 2;
      add(layout, rng, SynthClass::kDoor, door_x, shop_y0, door_x + door_w, f.by1);
    } else {
      add(layout, rng, SynthClass::kShop, x0 + pad, shop_y0, x1 - pad, f.by1);
    }
  }
}

// One window (wx0, wy0)-(wx1, wy1) with its blinds, sill, decoration and balcony.
void add_window(Layout& layout, Rng& rng, const Facade& f, int wx0, int wy0, int wx1, int wy1,
                bool balcony, int rail, int slab) {
  add(layout, rng, SynthClass::kWindow, wx0, wy0, wx1, wy1);
  if (f.blinds == 1) {
    const int shutter = std::max(2, int(std::lround(f.window_w * 0.45)));
    if (rng.chance(0.12)) {
      add(layout, rng, SynthClass::kBlind, wx0, wy0, wx1, wy1);  // closed
    } else {
      add(layout, rng, SynthClass::kBlind, wx0 - shutter, wy0, wx0, wy1);
      add(layout, rng, SynthClass::kBlind, wx1, wy0, wx1 + shutter, wy1);
    }
  } else if (f.blinds == 2 && rng.chance(0.5)) {
    add(layout, rng, SynthClass::kBlind, wx0, wy0, wx1,
        wy0 + std::max(1, int(std::lround((wy1 - wy0) * rng.uniform(0.15, 0.7)))));
  }
  const int overhang = std::max(1, int(std::lround(f.window_w * 0.08)));
  if (f.sills && !balcony)
    add(layout, rng, SynthClass::kSill, wx0 - overhang, wy1, wx1 + overhang,
        wy1 + std::max(1, int(std::lround(f.floor_height * 0.04))));
  if (f.deco == 1) {
    const int h = std::max(1, int(std::lround(f.floor_height * 0.07)));
    const int gap = int(std::lround(f.floor_height * 0.025));
    add(layout, rng, SynthClass::kDeco, wx0 - overhang, wy0 - gap - h, wx1 + overhang, wy0 - gap);
  } else if (f.deco == 2) {  // a triangular pediment, one row at a time
    const int h = std::max(2, int(std::lround(f.floor_height * 0.12)));
    const int half = f.window_w / 2 + overhang;
    const int centre = (wx0 + wx1) / 2;
    for (int row = 0; row < h; ++row) {
      const int w = std::max(1, int(std::lround(half * (1.0 - double(row) / h))));
      add(layout, rng, SynthClass::kDeco, centre - w, wy0 - 1 - row, centre + w, wy0 - row);
    }
  }
  if (balcony && f.balconies == 1) {
    const int side = std::max(1, int(std::lround(f.window_w * 0.2)));
    add(layout, rng, SynthClass::kBalcony, wx0 - side, wy1 - rail, wx1 + side, wy1 + slab);
  }
}

// Floor `floor`: its windows (the door in the ground floor's door column) and balconies.
void add_floor(Layout& layout, Rng& rng, const Facade& f, int floor) {
  const bool ground = !f.shop && floor == f.floors - 1;
  bool balcony = f.balconies != 0 && !ground && floor > 0;
  if (f.balcony_pattern == 1) balcony = balcony && floor % 2 == 1;
  if (f.balcony_pattern == 2) balcony = balcony && rng.chance(0.5);
  const int fy1 = f.floor_y(floor + 1);
  const int wy0 = f.floor_y(floor) + f.window_top;
  int wy1 = wy0 + f.window_h;
  if (balcony)
    wy1 = std::max(wy1, std::min(fy1 - 2, wy1 + int(std::lround(f.floor_height * 0.15))));
  const int rail = std::max(2, int(std::lround(f.floor_height * 0.28)));
  const int slab = std::max(1, int(std::lround(f.floor_height * 0.04)));
  if (balcony && f.balconies == 2)
    add(layout, rng, SynthClass::kBalcony, f.bx0 + f.px(0.02), wy1 - rail, f.bx1 - f.px(0.02),
        wy1 + slab);
  for (int c = 0; c < f.columns; ++c) {
    if (ground && c == f.door_column) {
      const double widest = std::min(f.column_width * 0.8, f.s * 0.16);
      const int door_w =
          std::max(4, int(std::lround(std::min(widest, f.window_w * rng.uniform(1.0, 1.5)))));
      const int door_h = int(std::lround(f.floor_height * rng.uniform(0.7, 0.9)));
      const int door_x = (f.column_x(c) + f.column_x(c + 1) - door_w) / 2;
      add(layout, rng, SynthClass::kDoor, door_x, f.by1 - door_h, door_x + door_w, f.by1);
      continue;
    }
    const int wx0 = (f.column_x(c) + f.column_x(c + 1) - f.window_w) / 2;
    add_window(layout, rng, f, wx0, wy0, wx0 + f.window_w, wy1, balcony, rail, slab);
  }
}

Layout make_layout(Rng& rng, int size) {
  Layout layout;
  layout.size = size;
  Facade facade = add_outline(layout, rng, size);
  draw_grid(facade, rng);
  add_structure(layout, rng, facade);
  for (int floor = 0; floor < facade.floors; ++floor) add_floor(layout, rng, facade, floor);
  return layout;
}

// ---------------------------------------------------------------------------------------------
// Photo style: everything about a pair's appearance that the label map does not say.

struct Style {
  float unit = 1;  // size / 256: texture scales follow the image size
  uint32_t texture_seed = 0;
  bool brick = false;
  Vec3 wall, mortar, trim, pillar, frame, glass, reflection, door, blind, railing, sign, sign_text;
  Vec3 shop_glass, shop_frame, sky_top, sky_bottom, neighbour_left, neighbour_right, street, roof;
  float roof_height = 0;  // fraction of the sky above the building covered by a sloped roof
  int brick_h = 3, brick_w = 7, mortar_w = 1;
  int frame_w = 1, bar_w = 1;
  int mullions = 0;  // none, vertical, cross
  float reflect = 0.3f, lit = 0.05f, clouds = 0.3f, dirt = 0.1f;
  bool dentils = false, fluted = false, stone_balcony = false, door_glass = false;
  int slat = 2, bar_spacing = 3;
  float gain = 1, light_x = 0, light_y = 0, noise = 0.02f;
  Vec3 tint{1, 1, 1};
  float shadow = 0.35f;
  int shadow_len = 4;
};

Style make_style(Rng& rng, int size) {
  Style st;
  const float u = size / 256.0f;
  auto scaled = [u](double pixels, int min) { return std::max(min, int(std::lround(pixels * u))); };
  st.unit = u;
  st.texture_seed = uint32_t(rng.next() >> 32);
  static const Vec3 kPlaster[] = {
      {0.86f, 0.80f, 0.68f}, {0.78f, 0.70f, 0.56f}, {0.80f, 0.64f, 0.40f}, {0.82f, 0.62f, 0.55f},
      {0.66f, 0.66f, 0.64f}, {0.90f, 0.89f, 0.86f}, {0.70f, 0.76f, 0.66f}, {0.62f, 0.68f, 0.74f},
      {0.88f, 0.78f, 0.46f}, {0.74f, 0.56f, 0.48f}};
  static const Vec3 kBrick[] = {{0.58f, 0.28f, 0.19f},
                                {0.47f, 0.31f, 0.23f},
                                {0.76f, 0.63f, 0.44f},
                                {0.38f, 0.23f, 0.19f},
                                {0.64f, 0.38f, 0.26f}};
  st.brick = rng.chance(0.35);
  st.wall = jitter(rng, st.brick ? pick(rng, kBrick) : pick(rng, kPlaster), 0.04f);
  st.mortar = jitter(rng, {0.78f, 0.76f, 0.72f}, 0.05f);
  st.brick_h = scaled(3.2, 2);
  st.brick_w = std::max(st.brick_h + 2, int(std::lround(st.brick_h * rng.uniform(2.0, 2.8))));
  st.mortar_w = std::max(1, int(std::lround(0.6 * u)));
  const Vec3 stone = jitter(rng, {0.90f, 0.88f, 0.82f}, 0.04f);
  st.trim = rng.chance(0.3) ? st.wall * 1.12f : mix(st.wall, stone, float(rng.uniform(0.5, 1.0)));
  st.pillar = rng.chance(0.5) ? st.trim : st.wall * 1.05f;
  static const Vec3 kFrame[] = {{0.92f, 0.92f, 0.90f},
                                {0.92f, 0.92f, 0.90f},
                                {0.28f, 0.18f, 0.11f},
                                {0.22f, 0.22f, 0.24f},
                                {0.20f, 0.34f, 0.24f}};
  st.frame = jitter(rng, pick(rng, kFrame), 0.03f);
  st.glass = jitter(rng, {0.16f, 0.20f, 0.26f}, 0.05f);
  st.reflection = jitter(rng, {0.62f, 0.72f, 0.82f}, 0.08f);
  static const Vec3 kWood[] = {{0.40f, 0.24f, 0.12f}, {0.30f, 0.18f, 0.10f}, {0.20f, 0.30f, 0.22f},
                               {0.42f, 0.14f, 0.12f}, {0.15f, 0.15f, 0.17f}, {0.55f, 0.38f, 0.22f}};
  st.door = jitter(rng, pick(rng, kWood), 0.03f);
  static const Vec3 kShutter[] = {{0.22f, 0.42f, 0.26f}, {0.45f, 0.30f, 0.18f},
                                  {0.88f, 0.88f, 0.85f}, {0.50f, 0.58f, 0.64f},
                                  {0.64f, 0.62f, 0.58f}, {0.30f, 0.45f, 0.55f}};
  st.blind = jitter(rng, pick(rng, kShutter), 0.03f);
  st.railing = jitter(rng, {0.14f, 0.14f, 0.15f}, 0.05f);
  st.stone_balcony = rng.chance(0.35);
  st.sign = {float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9)),
             float(rng.uniform(0.1, 0.9))};
  st.sign_text = (st.sign.r + st.sign.g + st.sign.b) > 1.4f ? Vec3{0.08f, 0.08f, 0.1f}
                                                            : Vec3{0.95f, 0.95f, 0.92f};
  st.shop_glass = jitter(rng, {0.18f, 0.20f, 0.22f}, 0.04f);
  st.shop_frame = rng.chance(0.5) ? st.railing : st.frame;
  const bool overcast = rng.chance(0.35);
  st.sky_top = overcast ? jitter(rng, {0.78f, 0.80f, 0.83f}, 0.04f)
                        : jitter(rng, {0.42f, 0.60f, 0.86f}, 0.05f);
  st.sky_bottom = overcast ? st.sky_top * 1.06f : jitter(rng, {0.78f, 0.86f, 0.94f}, 0.04f);
  st.clouds = float(rng.uniform(0.0, 0.7));
  st.neighbour_left = jitter(rng, {0.50f, 0.48f, 0.45f}, 0.12f);
  st.neighbour_right = jitter(rng, {0.50f, 0.48f, 0.45f}, 0.12f);
  st.street = jitter(rng, {0.33f, 0.33f, 0.34f}, 0.05f);
  static const Vec3 kRoof[] = {{0.30f, 0.31f, 0.34f}, {0.55f, 0.30f, 0.22f}, {0.42f, 0.36f, 0.33f}};
  st.roof = jitter(rng, pick(rng, kRoof), 0.03f);
  st.roof_height = rng.chance(0.35) ? float(rng.uniform(0.4, 0.9)) : 0.0f;
  st.frame_w = scaled(1.6, 1);
  st.bar_w = scaled(1.2, 1);
  st.mullions = rng.range(0, 2);
  st.reflect = float(rng.uniform(0.1, 0.6));
  st.lit = float(rng.uniform(0.0, 0.12));
  st.dirt = float(rng.uniform(0.0, 0.25));
  st.dentils = rng.chance(0.4);
  st.fluted = rng.chance(0.4);
  st.door_glass = rng.chance(0.35);
  st.slat = scaled(2.2, 2);
  st.bar_spacing = scaled(rng.uniform(2.5, 4.5), 2);
  st.gain = float(rng.uniform(0.78, 1.12));
  st.light_x = float(rng.uniform(-0.3, 0.3));
  st.light_y = float(rng.uniform(-0.15, 0.15));
  const float warmth = float(rng.uniform(-0.06, 0.06));
  st.tint = {1 + warmth, 1.0f, 1 - warmth};
  st.noise = float(rng.uniform(0.008, 0.03));
  st.shadow = float(rng.uniform(0.2, 0.5));
  st.shadow_len = scaled(rng.uniform(2.0, 6.0), 1);
  return st;
}

// ---------------------------------------------------------------------------------------------
// Shaders: the colour of one pixel of one class, before lighting, shadows and noise.

bool casts_shadow(SynthClass label) {
  return label == SynthClass::kCornice || label == SynthClass::kSill ||
         label == SynthClass::kBalcony || label == SynthClass::kDeco;
}

bool receives_shadow(SynthClass label) {
  return label == SynthClass::kWall || label == SynthClass::kWindow ||
         label == SynthClass::kBlind || label == SynthClass::kPillar ||
         label == SynthClass::kDoor || label == SynthClass::kShop;
}

struct Shader {
  const Layout& layout;
  const Style& st;

  float noise(float x, float y, float scale, uint32_t salt) const {
    return value_noise(x / (scale * st.unit), y / (scale * st.unit), st.texture_seed ^ salt);
  }

  Vec3 background(int x, int y) const {
    if (y < layout.by0) {
      // A roof sloping back from the top of the facade (background in the label, as in CMP).
      const int from_top = layout.by0 - y;
      if (from_top <= int(st.roof_height * float(layout.by0))) {
        const int inset = from_top * 2;
        if (x >= layout.bx0 + inset && x < layout.bx1 - inset) {
          const int tile = std::max(2, int(std::lround(2.0f * st.unit)));
          return st.roof * (from_top % tile == 0
                                ? 0.75f
                                : 0.95f + 0.1f * hash01(x / (2 * tile), y / tile, 0x54u));
        }
      }
      Vec3 c = mix(st.sky_top, st.sky_bottom, float(y) / float(std::max(1, layout.by0)));
      const float cloud = noise(float(x), float(y) * 2.0f, 40.0f, 0x51u);
      const float amount = std::clamp((cloud - 0.45f) * 3.0f, 0.0f, 1.0f) * st.clouds;
      return mix(c, Vec3{0.96f, 0.96f, 0.97f}, amount);
    }
    if (y >= layout.by1) return st.street * (0.85f + 0.2f * noise(float(x), float(y), 3, 0x52u));
    const Vec3 side = x < layout.bx0 ? st.neighbour_left : st.neighbour_right;
    return side * (0.8f + 0.25f * noise(float(x), float(y) * 0.2f, 6, 0x53u));
  }

  Vec3 wall(int x, int y) const {
    const float weathering =
        1.0f - st.dirt * float(y - layout.by0) / float(std::max(1, layout.by1 - layout.by0));
    if (!st.brick) {
      const float blotches = noise(float(x), float(y), 30, 0x11u);
      const float grain = noise(float(x), float(y), 4, 0x12u);
      return st.wall * ((0.92f + 0.12f * blotches + 0.06f * grain) * weathering);
    }
    const int row = y / st.brick_h;
    const int shifted = x + (row % 2) * (st.brick_w / 2);
    const int column = shifted / st.brick_w;
    if (y % st.brick_h < st.mortar_w || shifted % st.brick_w < st.mortar_w)
      return st.mortar * weathering;
    const float variation = 0.82f + 0.3f * hash01(column, row, st.texture_seed ^ 0x13u);
    return st.wall * (variation * weathering);
  }

  Vec3 window(const Element& e, int x, int y) const {
    const int w = e.x1 - e.x0, h = e.y1 - e.y0, lx = x - e.x0, ly = y - e.y0;
    const int f = std::min(st.frame_w, std::min(w, h) / 3);
    if (lx < f || ly < f || lx >= w - f || ly >= h - f)
      return st.frame * ((lx < f || ly < f) ? 1.05f : 0.85f);
    const int b = std::min(st.bar_w, std::max(1, w / 6));
    const int bar_x = (w - b) / 2;
    if (st.mullions >= 1 && w >= 6 && lx >= bar_x && lx < bar_x + b) return st.frame * 0.95f;
    if (st.mullions == 2 && h >= 8) {
      const int transom = f + (h - 2 * f) / 3;
      if (ly >= transom && ly < transom + b) return st.frame * 0.95f;
    }
    const int gw = w - 2 * f, gh = h - 2 * f, gx = lx - f, gy = ly - f;
    // Dark interior, lighter towards the bottom, with a diagonal reflection of the sky.
    Vec3 c = st.glass * ((0.75f + 0.5f * float(gy) / float(gh)) * (0.85f + 0.3f * e.jitter[1]));
    const float t = float(gx + gy) / float(gw + gh) + e.jitter[0] * 0.6f - 0.3f;
    const float band = std::max(0.0f, 1.0f - std::abs(t - 0.5f) * 4.0f);
    c = mix(c, st.reflection, st.reflect * band);
    if (e.jitter[2] < st.lit) c = mix(c, Vec3{1.0f, 0.86f, 0.55f}, 0.55f);
    const int recess = std::max(1, int(std::lround(1.5f * st.unit)));
    if (gy < recess || gx < recess) c = c * 0.6f;
    return c;
  }

  Vec3 door(const Element& e, int x, int y) const {
    const int w = e.x1 - e.x0, h = e.y1 - e.y0, lx = x - e.x0, ly = y - e.y0;
    const int f = std::min(st.frame_w, w / 4);
    if (lx < f || ly < f || lx >= w - f) return st.door * 0.6f;
    const int iw = w - 2 * f, ih = h - f, ix = lx - f, iy = ly - f;
    if (st.door_glass && iy < ih * 3 / 10) {
      Vec3 c = st.glass * (0.8f + 0.4f * float(iy) / float(std::max(1, ih * 3 / 10)));
      return mix(c, st.reflection, st.reflect * 0.5f);
    }
    const float grain = std::sin(float(2 * kPi) * float(x) / (2.5f * st.unit + 1.0f) +
                                 5.0f * noise(float(x), float(y), 12, 0x21u));
    Vec3 c = st.door * (0.92f + 0.08f * grain);
    // Two columns of panels with shaded edges (light from the top left).
    const int half = iw / 2;
    const int px = ix < half ? ix : ix - half, pw = ix < half ? half : iw - half;
    const int border = std::max(1, pw / 5), rows = 3;
    const int row_h = std::max(1, ih / rows), py = iy % row_h;
    if (pw >= 4 && row_h >= 4) {
      if (px == border - 1 || py == border - 1) c = c * 0.7f;
      if (px == pw - border || py == row_h - border) c = c * 1.2f;
    }
    if (ix == iw * 3 / 4 && iy == ih / 2) c = Vec3{0.8f, 0.7f, 0.4f};  // handle
    return c;
  }

  Vec3 cornice(const Element& e, int x, int y) const {
    const int h = e.y1 - e.y0, ly = y - e.y0;
    const float t = (float(ly) + 0.5f) / float(h);
    float shade = t < 0.3f ? 1.12f : t > 0.72f ? 0.7f : 1.0f;
    const int tooth = std::max(2, int(std::lround(2.0f * st.unit)));
    if (st.dentils && h >= 4 && t >= 0.45f && t <= 0.72f && (x / tooth) % 2 == 0) shade *= 0.78f;
    return st.trim * (shade * (0.95f + 0.08f * noise(float(x), float(y), 8, 0x31u)));
  }

  Vec3 sill(const Element& e, int y) const {
    const int h = e.y1 - e.y0, ly = y - e.y0;
    return st.trim * (ly == 0 ? 1.12f : (h > 1 && ly == h - 1) ? 0.72f : 0.95f);
  }

  Vec3 deco(int x, int y) const {
    const float a = std::sin(float(2 * kPi) * float(x) / (4.0f * st.unit + 1.0f));
    const float b = std::sin(float(2 * kPi) * float(y) / (3.0f * st.unit + 1.0f));
    return st.trim * (0.9f + 0.14f * a * b);
  }

  Vec3 pillar(const Element& e, int x) const {
    const int w = e.x1 - e.x0, lx = x - e.x0;
    float shade = 0.72f + 0.38f * std::sin(float(kPi) * (float(lx) + 0.5f) / float(w));
    if (st.fluted && w >= 5 && lx % 3 == 1) shade *= 0.88f;
    return st.pillar * shade;
  }

  Vec3 balcony(const Element& e, int x, int y) const {
    const int h = e.y1 - e.y0, lx = x - e.x0, ly = y - e.y0;
    const int rail = std::max(1, int(std::lround(1.2f * st.unit)));
    const int slab = std::max(1, int(std::lround(1.5f * st.unit)));
    const Vec3 behind = st.wall * 0.35f;  // what shows between the bars: the recess in shadow
    if (st.stone_balcony) {
      if (ly < rail) return st.trim * 1.1f;
      if (ly >= h - slab) return st.trim * 0.75f;
      const int spacing = st.bar_spacing + 1;
      const float v = float(ly - rail) / float(std::max(1, h - rail - slab));
      const float bulge = 0.3f + 0.25f * std::sin(float(kPi) * v);  // baluster profile
      const float d = std::abs(float(lx % spacing) + 0.5f - spacing * 0.5f) / float(spacing);
      return d < bulge ? st.trim * (1.0f - d) : behind;
    }
    if (ly < rail) return st.railing * 1.4f;
    if (ly >= h - slab) return st.trim * 0.8f;
    return (lx % st.bar_spacing) < std::max(1, st.bar_spacing / 3) ? st.railing : behind;
  }

  Vec3 blind(const Element& e, int x, int y) const {
    const int w = e.x1 - e.x0, lx = x - e.x0, ly = y - e.y0;
    float shade = 1.0f - 0.25f * float(ly % st.slat) / float(st.slat);
    if (lx == 0 || lx == w - 1) shade *= 0.8f;
    return st.blind * (shade * (0.95f + 0.05f * noise(float(x), float(y), 6, 0x41u)));
  }

  Vec3 shop(const Element& e, int x, int y) const {
    const int w = e.x1 - e.x0, h = e.y1 - e.y0, lx = x - e.x0, ly = y - e.y0;
    const int sign_h = std::max(2, int(std::lround(h * 0.22f)));
    if (ly < sign_h) {
      // Lettering: blocks in the middle of the sign.
      const int glyph = std::max(1, int(std::lround(1.6f * st.unit)));
      const bool text_row = ly >= sign_h / 4 && ly < sign_h - sign_h / 4;
      const bool text_col = lx >= w / 8 && lx < w - w / 8;
      if (text_row && text_col &&
          hash01(lx / glyph, ly / glyph, st.texture_seed ^ uint32_t(e.x0 * 131 + 0x61)) < 0.5f)
        return st.sign_text;
      return st.sign * (ly == sign_h - 1 ? 0.7f : 1.0f);
    }
    const int f = std::min(st.frame_w + 1, w / 6);
    if (lx < f || lx >= w - f || ly < sign_h + f) return st.shop_frame;
    // Goods behind glass, then a reflection band.
    Vec3 c = st.shop_glass * (0.6f + 1.2f * noise(float(x), float(y), 5, 0x62u));
    const float t = float(lx + (ly - sign_h)) / float(w + h - sign_h) + e.jitter[0] * 0.4f - 0.2f;
    const float band = std::max(0.0f, 1.0f - std::abs(t - 0.5f) * 3.0f);
    return mix(c, st.reflection, st.reflect * 0.7f * band);
  }
};

void check_size(int size) {
  if (size < kSynthMinSize || size > kSynthMaxSize)
    throw Error("synth: size " + std::to_string(size) + " is outside [" +
                std::to_string(kSynthMinSize) + ", " + std::to_string(kSynthMaxSize) + "]");
}

// "<digits>.png": a name write_synth_dataset writes.
bool is_pair_file_name(const std::string& name) {
  const size_t dot = name.size() >= 5 ? name.size() - 4 : 0;
  if (dot == 0 || name.compare(dot, 4, ".png") != 0) return false;
  return std::all_of(name.begin(), name.begin() + long(dot),
                     [](char c) { return c >= '0' && c <= '9'; });
}

inline uint8_t to_byte(float v) {
  return uint8_t(std::clamp(int(std::lround(v * 255.0f)), 0, 255));
}

}  // namespace

const std::array<SynthColor, kSynthClassCount>& synth_palette() {
  // The facades label colours: the CMP database's 12 labels on a jet colour map.
  static const std::array<SynthColor, kSynthClassCount> palette = {{
      {0, 0, 170},     // background
      {0, 0, 255},     // wall (facade)
      {0, 85, 255},    // window
      {0, 170, 255},   // door
      {0, 255, 255},   // cornice
      {85, 255, 170},  // sill
      {170, 255, 85},  // balcony
      {255, 255, 0},   // blind
      {255, 170, 0},   // deco
      {255, 0, 0},     // pillar
      {170, 0, 0},     // shop
  }};
  return palette;
}

const char* to_string(SynthClass label) {
  switch (label) {
    case SynthClass::kBackground:
      return "background";
    case SynthClass::kWall:
      return "wall";
    case SynthClass::kWindow:
      return "window";
    case SynthClass::kDoor:
      return "door";
    case SynthClass::kCornice:
      return "cornice";
    case SynthClass::kSill:
      return "sill";
    case SynthClass::kBalcony:
      return "balcony";
    case SynthClass::kBlind:
      return "blind";
    case SynthClass::kDeco:
      return "deco";
    case SynthClass::kPillar:
      return "pillar";
    case SynthClass::kShop:
      return "shop";
    case SynthClass::kCount:
      break;
  }
  return "unknown";
}

SynthPair render_synth_pair(uint64_t seed, int size) {
  check_size(size);
  Rng rng(seed);
  const Layout layout = make_layout(rng, size);
  const Style style = make_style(rng, size);
  const size_t pixels = size_t(size) * size_t(size);

  // Rasterise: the class of each pixel and the element that drew it (-1: background).
  SynthPair pair;
  pair.classes.assign(pixels, uint8_t(SynthClass::kBackground));
  std::vector<int32_t> owner(pixels, -1);
  for (size_t i = 0; i < layout.elements.size(); ++i) {
    const Element& e = layout.elements[i];
    for (int y = e.y0; y < e.y1; ++y) {
      const size_t row = size_t(y) * size_t(size);
      std::fill(pair.classes.begin() + row + e.x0, pair.classes.begin() + row + e.x1,
                uint8_t(e.label));
      std::fill(owner.begin() + row + e.x0, owner.begin() + row + e.x1, int32_t(i));
    }
  }

  pair.label = Image(size, size, 3);
  pair.photo = Image(size, size, 3);
  const auto& palette = synth_palette();
  const Shader shader{layout, style};
  // Rows since the last shadow-casting pixel above, per column.
  std::vector<int> since_caster(size_t(size), 1 << 20);
  const float inv = 1.0f / float(size);
  uint8_t* label_out = pair.label.samples<uint8_t>();
  uint8_t* photo_out = pair.photo.samples<uint8_t>();
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const size_t i = size_t(y) * size_t(size) + size_t(x);
      const auto label = SynthClass(pair.classes[i]);
      const SynthColor flat = palette[size_t(label)];
      label_out[3 * i] = flat.r, label_out[3 * i + 1] = flat.g, label_out[3 * i + 2] = flat.b;

      const Element* e = owner[i] >= 0 ? &layout.elements[size_t(owner[i])] : nullptr;
      Vec3 c;
      switch (label) {
        case SynthClass::kBackground:
          c = shader.background(x, y);
          break;
        case SynthClass::kWall:
          c = shader.wall(x, y);
          break;
        case SynthClass::kWindow:
          c = shader.window(*e, x, y);
          break;
        case SynthClass::kDoor:
          c = shader.door(*e, x, y);
          break;
        case SynthClass::kCornice:
          c = shader.cornice(*e, x, y);
          break;
        case SynthClass::kSill:
          c = shader.sill(*e, y);
          break;
        case SynthClass::kBalcony:
          c = shader.balcony(*e, x, y);
          break;
        case SynthClass::kBlind:
          c = shader.blind(*e, x, y);
          break;
        case SynthClass::kDeco:
          c = shader.deco(x, y);
          break;
        case SynthClass::kPillar:
          c = shader.pillar(*e, x);
          break;
        case SynthClass::kShop:
          c = shader.shop(*e, x, y);
          break;
        case SynthClass::kCount:
          break;
      }
      // Shadows under protruding elements, fading over shadow_len rows.
      int& since = since_caster[size_t(x)];
      since = casts_shadow(label) ? 0 : since + 1;
      if (receives_shadow(label) && since <= style.shadow_len)
        c = c * (1.0f - style.shadow * (1.0f - float(since - 1) / float(style.shadow_len)));
      // Light across the building (not on the sky), colour cast, sensor noise.
      if (!(label == SynthClass::kBackground && y < layout.by0)) {
        const float light = 1.0f + style.light_x * (float(x) * inv - 0.5f) +
                            style.light_y * (float(y) * inv - 0.5f);
        c = c * light;
      }
      c = c * style.tint * style.gain;
      const uint32_t salt = style.texture_seed ^ 0x9E37u;
      const float n = style.noise * 2.0f;
      photo_out[3 * i] = to_byte(c.r + n * (hash01(x, y, salt) - 0.5f));
      photo_out[3 * i + 1] = to_byte(c.g + n * (hash01(x, y, salt + 1) - 0.5f));
      photo_out[3 * i + 2] = to_byte(c.b + n * (hash01(x, y, salt + 2) - 0.5f));
    }
  }
  return pair;
}

uint64_t synth_pair_seed(uint64_t dataset_seed, const std::string& split, int index) {
  uint64_t split_hash = 0xCBF29CE484222325ULL;  // FNV-1a
  for (unsigned char c : split) split_hash = (split_hash ^ c) * 0x100000001B3ULL;
  return mix_seed(dataset_seed, split_hash, uint64_t(uint32_t(index)));
}

Image synth_aligned_image(const SynthPair& pair) {
  const int size = pair.label.height;
  Image out(2 * size, size, 3);
  const size_t half = size_t(size) * 3;
  for (int y = 0; y < size; ++y) {
    uint8_t* row = out.data.data() + size_t(y) * 2 * half;
    std::copy_n(pair.label.data.data() + size_t(y) * half, half, row);
    std::copy_n(pair.photo.data.data() + size_t(y) * half, half, row + half);
  }
  return out;
}

SynthSummary write_synth_dataset(const std::string& out, const SynthOptions& options,
                                 const SynthProgressCallback& progress) {
  check_size(options.size);
  const std::pair<const char*, int> splits[] = {
      {"train", options.train}, {"val", options.val}, {"test", options.test}};
  for (const auto& [name, count] : splits)
    if (count < 0)
      throw Error("synth: --" + std::string(name) + " must be >= 0, got " + std::to_string(count));
  if (options.compression_level < 0 || options.compression_level > 9)
    throw Error("synth: compression level must be 0..9, got " +
                std::to_string(options.compression_level));

  // Check every folder before writing anything.
  std::error_code error;
  if (fs::exists(out, error) && !fs::is_directory(out, error))
    throw Error(out, "exists and is not a folder");
  for (const auto& [name, count] : splits) {
    if (count == 0) continue;
    const fs::path folder = fs::path(out) / name;
    if (!fs::exists(folder, error)) continue;
    if (!fs::is_directory(folder, error))
      throw Error(folder.string(), "exists and is not a folder");
    if (!fs::is_empty(folder, error) && !options.force)
      throw Error(folder.string(),
                  "already exists and is not empty; refusing to overwrite it (use `force`)");
  }

  const auto start = std::chrono::steady_clock::now();
  auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  SynthSummary summary;
  for (const auto& [name, count] : splits) {
    SynthSplitSummary split;
    split.split = name;
    split.folder = (fs::path(out) / name).string();
    split.count = count;
    if (count == 0) {
      summary.splits.push_back(split);
      continue;
    }
    const auto split_start = std::chrono::steady_clock::now();
    fs::create_directories(split.folder, error);
    if (error)
      throw Error(split.folder, "cannot create the folder: " + error.message(),
                  ErrorKind::kRuntime);
    if (options.force) {  // leftovers of an earlier dataset would mix with this one
      for (const auto& entry : fs::directory_iterator(split.folder, error)) {
        if (entry.is_regular_file() && is_pair_file_name(entry.path().filename().string()))
          if (!fs::remove(entry.path(), error) && error)
            throw Error(entry.path().string(), "cannot remove: " + error.message(),
                        ErrorKind::kRuntime);
      }
      if (error) throw Error(split.folder, "cannot list: " + error.message(), ErrorKind::kRuntime);
    }

    // Workers take indices from a shared counter; each pair depends only on its own seed.
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const int workers =
        std::max(1, std::min(count, options.threads > 0 ? options.threads : int(cores)));
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    std::atomic<uint64_t> bytes{0};
    std::mutex mutex;  // guards done, first_error and the progress callback
    int done = 0;
    std::exception_ptr first_error;
    auto work = [&] {
      try {
        for (int i = next++; i < count && !failed; i = next++) {
          const int index = i + 1;
          const SynthPair pair =
              render_synth_pair(synth_pair_seed(options.seed, name, index), options.size);
          const std::string path =
              (fs::path(split.folder) / (std::to_string(index) + ".png")).string();
          write_png(path, synth_aligned_image(pair), PngWriteOptions{options.compression_level});
          std::error_code size_error;
          const auto file_size = fs::file_size(path, size_error);
          if (!size_error) bytes += file_size;
          std::lock_guard<std::mutex> lock(mutex);
          ++done;
          if (progress) progress(SynthProgress{name, done, count, seconds_since(split_start)});
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!first_error) first_error = std::current_exception();
        failed = true;
      }
    };
    std::vector<std::thread> threads;
    for (int t = 1; t < workers; ++t) threads.emplace_back(work);
    work();
    for (auto& thread : threads) thread.join();
    if (first_error) std::rethrow_exception(first_error);
    split.bytes = bytes;
    split.seconds = seconds_since(split_start);
    summary.splits.push_back(split);
  }
  summary.seconds = seconds_since(start);
  return summary;
}

}  // namespace pix2pix
