// The files of a training run, named in one place (docs/design.md, "Run directory"): the trainer
// writes them, and resume, test, translate, the report and the results page read them.
#pragma once

#include <string>

namespace pix2pix {

/// RUN = runs_dir/name and the files inside it.
struct RunDirectory {
  std::string path;

  std::string options() const { return path + "/options.json"; }   ///< the run's options
  std::string model_txt() const { return path + "/model.txt"; }    ///< networks, CPU
  std::string metrics() const { return path + "/metrics.jsonl"; }  ///< one JSON row per event
  std::string report() const { return path + "/report.html"; }
  std::string tensorboard() const { return path + "/tb"; }
  std::string samples() const { return path + "/samples"; }
  std::string checkpoints() const { return path + "/checkpoints"; }
  std::string results() const { return path + "/results"; }  ///< `pix2pix test` outputs
  /// checkpoints/LABEL_net_NET.pth: LABEL latest, best or an epoch; NET "G" or "D".
  std::string weights(const std::string& label, const std::string& net = "G") const {
    return checkpoints() + "/" + weights_name(label, net);
  }
  /// checkpoints/latest_state.pt: optimisers, schedules, RNGs and the run's position.
  std::string state() const { return checkpoints() + "/latest_state.pt"; }

  /// LABEL_net_NET.pth, the name of a weights file inside checkpoints/.
  static std::string weights_name(const std::string& label, const std::string& net = "G") {
    return label + "_net_" + net + ".pth";
  }
};

}  // namespace pix2pix
