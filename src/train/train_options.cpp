#include "train/train_options.h"

#include <fmt/core.h>

#include <functional>

#include "pix2pix/error.h"

namespace pix2pix::detail {

namespace {

using Json = nlohmann::json;

// How a field is written to and read from JSON.
struct Field {
  OptionField info;
  std::function<Json(const TrainOptions&)> write;
  std::function<void(const Json&, TrainOptions&)> read;  // throws Error(reason)
};

enum Resume { kFixed, kMayChange };

// A field stored as its JSON value. `get` returns a reference to it inside TrainOptions.
template <typename Get>
Field value(const char* key, Resume resume, Get get) {
  return {{key, resume == kMayChange},
          [get](const TrainOptions& o) { return Json(get(const_cast<TrainOptions&>(o))); },
          [get](const Json& j, TrainOptions& o) {
            auto& field = get(o);
            try {
              field = j.get<std::remove_reference_t<decltype(field)>>();
            } catch (const Json::exception& e) {
              throw Error(e.what());
            }
          }};
}

// A field stored by name: to_string() to write, `parse` (which throws Error) to read.
template <typename Get, typename Parse>
Field named(const char* key, Resume resume, Get get, Parse parse) {
  return {
      {key, resume == kMayChange},
      [get](const TrainOptions& o) { return Json(to_string(get(const_cast<TrainOptions&>(o)))); },
      [get, parse](const Json& j, TrainOptions& o) {
        if (!j.is_string()) throw Error("expected a string, not " + j.dump());
        get(o) = parse(j.get<std::string>());
      }};
}

#define P2P_FIELD(expr) \
  [](TrainOptions & o) -> auto& { return o.expr; }

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      value("data", kMayChange, P2P_FIELD(data)),
      value("name", kFixed, P2P_FIELD(name)),
      value("runs_dir", kFixed, P2P_FIELD(runs_dir)),
      named("direction", kFixed, P2P_FIELD(direction), parse_direction),
      value("netG", kFixed, P2P_FIELD(generator.net)),
      value("ngf", kFixed, P2P_FIELD(generator.ngf)),
      value("input_nc", kFixed, P2P_FIELD(generator.input_nc)),
      value("output_nc", kFixed, P2P_FIELD(generator.output_nc)),
      value("num_downs", kFixed, P2P_FIELD(generator.num_downs)),
      named("norm", kFixed, P2P_FIELD(generator.norm), parse_norm),
      value("dropout", kFixed, P2P_FIELD(generator.dropout)),
      named("upsampling", kFixed, P2P_FIELD(generator.upsampling), parse_upsampling),
      value("netD", kFixed, P2P_FIELD(discriminator.net)),
      value("ndf", kFixed, P2P_FIELD(discriminator.ndf)),
      value("n_layers_D", kFixed, P2P_FIELD(discriminator.n_layers)),
      named("norm_D", kFixed, P2P_FIELD(discriminator.norm), parse_norm),
      named("init_type", kFixed, P2P_FIELD(init.type), parse_init_type),
      value("init_gain", kFixed, P2P_FIELD(init.gain)),
      named("gan_mode", kFixed, P2P_FIELD(objective.gan_mode), parse_gan_mode),
      value("lambda_l1", kFixed, P2P_FIELD(objective.lambda_l1)),
      value("lambda_gp", kFixed, P2P_FIELD(objective.lambda_gp)),
      value("no_gan", kFixed, P2P_FIELD(objective.no_gan)),
      value("unconditional_d", kFixed, P2P_FIELD(objective.unconditional_d)),
      value("lr", kFixed, P2P_FIELD(adam.lr)),
      value("beta1", kFixed, P2P_FIELD(adam.beta1)),
      value("beta2", kFixed, P2P_FIELD(adam.beta2)),
      value("lr_d_ratio", kFixed, P2P_FIELD(lr_d_ratio)),
      named("lr_policy", kFixed, P2P_FIELD(schedule.policy), parse_lr_policy),
      value("n_epochs", kMayChange, P2P_FIELD(schedule.n_epochs)),
      value("n_epochs_decay", kMayChange, P2P_FIELD(schedule.n_epochs_decay)),
      value("lr_decay_epochs", kFixed, P2P_FIELD(schedule.lr_decay_epochs)),
      named("preprocess", kFixed, P2P_FIELD(transform.preprocess), parse_preprocess),
      value("load_size", kFixed, P2P_FIELD(transform.load_size)),
      {{"crop_size", false},
       [](const TrainOptions& o) {
         return Json(to_string(CropSize{o.transform.crop_height, o.transform.crop_width}));
       },
       [](const Json& j, TrainOptions& o) {
         if (!j.is_string()) throw Error("expected a string, not " + j.dump());
         const CropSize crop = parse_crop_size(j.get<std::string>());
         o.transform.crop_height = crop.height;
         o.transform.crop_width = crop.width;
       }},
      value("flip", kFixed, P2P_FIELD(transform.flip)),
      named("resize_filter", kFixed, P2P_FIELD(transform.filter), parse_resize_filter),
      value("batch_size", kFixed, P2P_FIELD(loader.batch_size)),
      value("workers", kMayChange, P2P_FIELD(loader.workers)),
      value("cache", kMayChange, P2P_FIELD(loader.cache)),
      value("seed", kFixed, P2P_FIELD(seed)),
      value("max_steps", kMayChange, P2P_FIELD(max_steps)),
      value("print_every", kMayChange, P2P_FIELD(print_every)),
      value("sample_every", kMayChange, P2P_FIELD(sample_every)),
      value("save_every_steps", kMayChange, P2P_FIELD(save_every_steps)),
      value("save_every_epochs", kMayChange, P2P_FIELD(save_every_epochs)),
      value("validate", kMayChange, P2P_FIELD(validate)),
      value("init_G", kFixed, P2P_FIELD(init_g)),
      value("init_D", kFixed, P2P_FIELD(init_d)),
      value("deterministic", kFixed, P2P_FIELD(deterministic)),
      value("accumulate", kFixed, P2P_FIELD(accumulate)),
      value("max_nonfinite", kMayChange, P2P_FIELD(max_nonfinite)),
      named("precision", kMayChange, P2P_FIELD(compute.precision), parse_precision),
      named("transposed_conv", kMayChange, P2P_FIELD(compute.transposed), parse_transposed_conv),
      {{"bf16_conv", true},
       [](const TrainOptions& o) { return Json(o.compute.onednn_direct ? "direct" : "libtorch"); },
       [](const Json& j, TrainOptions& o) {
         const std::string name = j.is_string() ? j.get<std::string>() : j.dump();
         if (name != "direct" && name != "libtorch")
           throw Error("'" + name + "' (expected direct or libtorch)");
         o.compute.onednn_direct = name == "direct";
       }},
      value("max_seconds", kMayChange, P2P_FIELD(max_seconds)),
      value("validate_first", kMayChange, P2P_FIELD(validate_first)),
      value("tensorboard", kMayChange, P2P_FIELD(tensorboard)),
      value("report", kMayChange, P2P_FIELD(report)),
      named("on_bad_file", kMayChange, P2P_FIELD(on_bad_file), parse_bad_file_policy),
  };
  return table;
}

#undef P2P_FIELD

}  // namespace

const std::vector<OptionField>& option_fields() {
  static const std::vector<OptionField> infos = [] {
    std::vector<OptionField> out;
    for (const Field& field : fields()) out.push_back(field.info);
    return out;
  }();
  return infos;
}

Json options_json(const TrainOptions& options) {
  Json json = Json::object();
  for (const Field& field : fields()) json[field.info.key] = field.write(options);
  return json;
}

void read_options_json(const Json& json, const std::string& file, TrainOptions* options) {
  for (const Field& field : fields()) {
    const auto it = json.find(field.info.key);
    if (it == json.end() || it->is_null()) continue;
    try {
      field.read(*it, *options);
    } catch (const Error& e) {
      throw Error(file, fmt::format("option \"{}\": {}", field.info.key, e.what()));
    }
  }
}

std::vector<std::string> resume_conflicts(const Json& stored, const Json& current) {
  std::vector<std::string> conflicts;
  for (const Field& field : fields()) {
    const char* key = field.info.key;
    if (field.info.may_change_on_resume || !current.contains(key)) continue;
    if (stored.contains(key) && stored.at(key) == current.at(key)) continue;
    conflicts.push_back(fmt::format("{} ({} -> {})", key,
                                    stored.contains(key) ? stored.at(key).dump() : "unset",
                                    current.at(key).dump()));
  }
  return conflicts;
}

}  // namespace pix2pix::detail
