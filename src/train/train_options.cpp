#include "train/train_options.h"

#include <fmt/core.h>

#include <fstream>
#include <functional>
#include <stdexcept>

#include "pix2pix/device.h"
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
enum Flag { kPlain, kNegated };

// What the table says about an option besides how to reach it.
struct Describe {
  const char* key;
  Resume resume;
  Flag flag;
  const char* doc;
};

OptionField info(const Describe& d) {
  return {d.key, d.resume == kMayChange, d.flag == kNegated, d.doc};
}

// A field stored as its JSON value. `get` returns a reference to it inside TrainOptions.
template <typename Get>
Field value(const Describe& d, Get get) {
  return {info(d), [get](const TrainOptions& o) { return Json(get(const_cast<TrainOptions&>(o))); },
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
Field named(const Describe& d, Get get, Parse parse) {
  return {
      info(d),
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
      value({"data", kMayChange, kPlain, "dataset folder (aligned A|B images or A/ B/ folders)"},
            P2P_FIELD(data)),
      value({"name", kFixed, kPlain, "run name: the run lives in RUNS_DIR/NAME"}, P2P_FIELD(name)),
      value({"runs_dir", kFixed, kPlain, "folder of runs"}, P2P_FIELD(runs_dir)),
      named({"direction", kFixed, kPlain, "AtoB or BtoA (facades labels->photos: BtoA)"},
            P2P_FIELD(direction), parse_direction),
      value({"netG", kFixed, kPlain,
             "generator: unet_256, unet_128, unet_<side> or unet (with --num-downs), "
             "resnet_6blocks, resnet_9blocks"},
            P2P_FIELD(generator.net)),
      value({"ngf", kFixed, kPlain, "generator filters in the first layer"},
            P2P_FIELD(generator.ngf)),
      value({"input_nc", kFixed, kPlain, "input image channels"}, P2P_FIELD(generator.input_nc)),
      value({"output_nc", kFixed, kPlain, "output image channels"}, P2P_FIELD(generator.output_nc)),
      value({"num_downs", kFixed, kPlain, "U-Net depth (default: from --netG)"},
            P2P_FIELD(generator.num_downs)),
      named({"norm", kFixed, kPlain,
             "normalisation: batch, instance, none or syncbatch (batch norm over all data-parallel "
             "ranks)"},
            P2P_FIELD(generator.norm), parse_norm),
      value({"dropout", kFixed, kNegated, "no dropout in the generator"},
            P2P_FIELD(generator.dropout)),
      named({"upsampling", kFixed, kPlain,
             "decoder upsampling: transposed (reference), resize-conv (= resize-nearest) or "
             "resize-bilinear"},
            P2P_FIELD(generator.upsampling), parse_upsampling),
      value(
          {"netD", kFixed, kPlain, "discriminator: basic (70x70 PatchGAN), n_layers, pixel, image"},
          P2P_FIELD(discriminator.net)),
      value({"ndf", kFixed, kPlain, "discriminator filters in the first layer"},
            P2P_FIELD(discriminator.ndf)),
      value({"n_layers_D", kFixed, kPlain,
             "PatchGAN layers for n_layers/image: 1..5 = 16, 34, 70, 142, 286 pixel patches"},
            P2P_FIELD(discriminator.n_layers)),
      named({"norm_D", kFixed, kPlain, "discriminator normalisation (default: as --norm)"},
            P2P_FIELD(discriminator.norm), parse_norm),
      named({"init_type", kFixed, kPlain, "weight init: normal, xavier, kaiming or orthogonal"},
            P2P_FIELD(init.type), parse_init_type),
      value({"init_gain", kFixed, kPlain, "std (normal) or gain (xavier, orthogonal)"},
            P2P_FIELD(init.gain)),
      named({"gan_mode", kFixed, kPlain, "GAN loss: vanilla, lsgan or wgangp"},
            P2P_FIELD(objective.gan_mode), parse_gan_mode),
      value({"lambda_l1", kFixed, kPlain, "weight of the L1 loss"}, P2P_FIELD(objective.lambda_l1)),
      value({"lambda_gp", kFixed, kPlain, "weight of the gradient penalty (0: off)"},
            P2P_FIELD(objective.lambda_gp)),
      value({"no_gan", kFixed, kPlain, "ablation: L1 only"}, P2P_FIELD(objective.no_gan)),
      value({"unconditional_d", kFixed, kPlain, "ablation: D sees only the output image"},
            P2P_FIELD(objective.unconditional_d)),
      value({"lr", kFixed, kPlain, "Adam learning rate"}, P2P_FIELD(adam.lr)),
      value({"beta1", kFixed, kPlain, "Adam beta1"}, P2P_FIELD(adam.beta1)),
      value({"beta2", kFixed, kPlain, "Adam beta2"}, P2P_FIELD(adam.beta2)),
      value({"lr_d_ratio", kFixed, kPlain, "D's learning rate / G's"}, P2P_FIELD(lr_d_ratio)),
      named({"lr_policy", kFixed, kPlain, "linear, step, cosine or plateau"},
            P2P_FIELD(schedule.policy), parse_lr_policy),
      value({"n_epochs", kMayChange, kPlain, "epochs at the initial learning rate"},
            P2P_FIELD(schedule.n_epochs)),
      value({"n_epochs_decay", kMayChange, kPlain, "epochs of linear decay"},
            P2P_FIELD(schedule.n_epochs_decay)),
      value({"lr_decay_epochs", kFixed, kPlain, "step policy: epochs per x0.1"},
            P2P_FIELD(schedule.lr_decay_epochs)),
      named({"preprocess", kFixed, kPlain,
             "resize_and_crop, crop, scale_width, scale_width_and_crop or none"},
            P2P_FIELD(transform.preprocess), parse_preprocess),
      value({"load_size", kFixed, kPlain, "resize target"}, P2P_FIELD(transform.load_size)),
      {{"crop_size", false, false, "crop: N or HxW"},
       [](const TrainOptions& o) {
         return Json(to_string(CropSize{o.transform.crop_height, o.transform.crop_width}));
       },
       [](const Json& j, TrainOptions& o) {
         if (!j.is_string()) throw Error("expected a string, not " + j.dump());
         const CropSize crop = parse_crop_size(j.get<std::string>());
         o.transform.crop_height = crop.height;
         o.transform.crop_width = crop.width;
       }},
      value({"flip", kFixed, kNegated, "no random horizontal flips"}, P2P_FIELD(transform.flip)),
      named({"resize_filter", kFixed, kPlain, "bicubic, bilinear or nearest"},
            P2P_FIELD(transform.filter), parse_resize_filter),
      value({"batch_size", kFixed, kPlain, "images per step"}, P2P_FIELD(loader.batch_size)),
      value({"workers", kMayChange, kPlain, "data loading threads"}, P2P_FIELD(loader.workers)),
      value({"cache", kMayChange, kPlain, "keep decoded images in memory"},
            P2P_FIELD(loader.cache)),
      value({"seed", kFixed, kPlain, "seed of initialisation, data order, jitter, dropout"},
            P2P_FIELD(seed)),
      value({"max_steps", kMayChange, kPlain, "stop after N steps in total (0: all epochs)"},
            P2P_FIELD(max_steps)),
      value({"print_every", kMayChange, kPlain, "steps between progress lines"},
            P2P_FIELD(print_every)),
      value({"sample_every", kMayChange, kPlain, "steps between sample images (0: never)"},
            P2P_FIELD(sample_every)),
      value({"save_every_steps", kMayChange, kPlain, "steps between latest checkpoints"},
            P2P_FIELD(save_every_steps)),
      value({"save_every_epochs", kMayChange, kPlain, "epochs between snapshots"},
            P2P_FIELD(save_every_epochs)),
      value({"validate", kMayChange, kNegated, "skip validation on the val split"},
            P2P_FIELD(validate)),
      value({"init_G", kFixed, kPlain, "start G from this PyTorch state_dict (.pth)"},
            P2P_FIELD(init_g)),
      value({"init_D", kFixed, kPlain, "start D from this PyTorch state_dict (.pth)"},
            P2P_FIELD(init_d)),
      value({"deterministic", kFixed, kPlain,
             "deterministic algorithms only: same seed and --threads give identical runs"},
            P2P_FIELD(deterministic)),
      value({"accumulate", kFixed, kPlain,
             "batches whose gradients are summed before each optimiser step"},
            P2P_FIELD(accumulate)),
      value({"max_nonfinite", kMayChange, kPlain,
             "stop after N steps in a row with a non-finite loss or gradient (0: never)"},
            P2P_FIELD(max_nonfinite)),
      {{"device", true, false,
        "where G and D run: auto (the first GPU when this libtorch has CUDA and sees one, else "
        "the CPU), cpu, cuda or cuda:N"},
       [](const TrainOptions& o) { return Json(o.compute.device.str()); },
       [](const Json& j, TrainOptions& o) {
         if (!j.is_string()) throw Error("expected a string, not " + j.dump());
         const std::string name = j.get<std::string>();
         // A run's record may name a GPU this machine lacks (translating a GPU-trained run on a
         // laptop): only the name is checked here; the CLI checks what it will run on.
         if (name == "auto") {
           o.compute.device = parse_device(name);
         } else {
           try {
             o.compute.device = c10::Device(name);
           } catch (const c10::Error&) {
             throw Error("'" + name + "' is not a device: auto, cpu, cuda or cuda:N");
           }
         }
       }},
      named({"precision", kMayChange, kPlain,
             "fp32; bf16: bfloat16 convolutions (fp32 master weights, norms and losses), on CPUs "
             "with bfloat16 instructions (AVX-512 BF16 or AMX; BF16 on arm64); auto: bf16 where "
             "the CPU has them, else fp32"},
            P2P_FIELD(compute.precision), parse_precision),
      named({"transposed_conv", kMayChange, kPlain,
             "fp32 convolution forms: auto (matrix products on small maps, transposed convolutions "
             "as convolution gradients on larger ones), gradient (transposed ones always as "
             "convolution gradients), native (libtorch's: the reference's numbers bit for bit)"},
            P2P_FIELD(compute.transposed), parse_transposed_conv),
      {{"onednn", true, false,
        "how CPU convolutions reach oneDNN (bf16, and fp32 unless --transposed-conv native): "
        "direct (called directly, each weight reordered once per change: once per optimiser "
        "step, once in inference), or libtorch (its conv2d, which reorders on every call: the "
        "same kernels and numbers, up to the rounding of an fp32 bias; slower)"},
       [](const TrainOptions& o) { return Json(o.compute.onednn_direct ? "direct" : "libtorch"); },
       [](const Json& j, TrainOptions& o) {
         const std::string name = j.is_string() ? j.get<std::string>() : j.dump();
         if (name != "direct" && name != "libtorch")
           throw Error("'" + name + "' (expected direct or libtorch)");
         o.compute.onednn_direct = name == "direct";
       }},
      value({"max_seconds", kMayChange, kPlain,
             "time budget: validate, save and stop after N seconds of training (0: none)"},
            P2P_FIELD(max_seconds)),
      value({"validate_first", kMayChange, kPlain,
             "also validate the untrained model (a val row at step 0)"},
            P2P_FIELD(validate_first)),
      value({"tensorboard", kMayChange, kNegated,
             "do not write TensorBoard event files to RUNS_DIR/NAME/tb"},
            P2P_FIELD(tensorboard)),
      value({"report", kMayChange, kNegated,
             "do not rewrite RUNS_DIR/NAME/report.html after every epoch"},
            P2P_FIELD(report)),
      named({"on_bad_file", kMayChange, kPlain,
             "a data file that cannot be used: fail (stop and name it; found before training by a "
             "header scan, or later with a checkpoint saved) or skip (leave it out, logged and "
             "counted in metrics.jsonl)"},
            P2P_FIELD(on_bad_file), parse_bad_file_policy),
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

const OptionField& option_field(const std::string& key) {
  for (const OptionField& field : option_fields())
    if (key == field.key) return field;
  throw std::out_of_range("no training option '" + key + "'");
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

Json read_options_file(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw Error(path, "missing or unreadable");
  Json document;
  try {
    file >> document;
  } catch (const Json::exception& e) {
    throw Error(path, std::string("not valid JSON: ") + e.what());
  }
  if (document.is_object() && document.contains("options")) document = document["options"];
  if (!document.is_object()) throw Error(path, "expected a JSON object of options");
  return document;
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
