// The option enums' names (names.h): each parse_<enum>() reads every name of names<E>() back to
// the value to_string() writes it from, the names are distinct, and a bad name is refused with
// a pix2pix::Error that lists them all.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "pix2pix/data/dataset.h"
#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/models/init.h"
#include "pix2pix/models/norm.h"
#include "pix2pix/names.h"
#include "pix2pix/train/losses.h"
#include "pix2pix/train/optim.h"
#include "pix2pix/train/trainer.h"

namespace pix2pix {
namespace {

template <typename E, typename Parse>
void check_names(const char* enum_name, Parse parse) {
  SCOPED_TRACE(enum_name);
  const std::vector<std::string>& all = names<E>();
  EXPECT_GE(all.size(), 2u);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), all.size()) << "duplicates";
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE(all[i]);
    EXPECT_FALSE(all[i].empty());
    const E value = parse(all[i]);
    EXPECT_EQ(static_cast<size_t>(value), i) << "not in the enum's declaration order";
    EXPECT_EQ(to_string(value), all[i]);
  }
  try {
    parse("nonsense");
    ADD_FAILURE() << "'nonsense' was accepted";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'nonsense'"), std::string::npos) << message;
    for (const std::string& name : all) EXPECT_NE(message.find(name), std::string::npos) << message;
  }
}

TEST(Names, EveryOptionEnumParsesItsNamesAndListsThemWhenRefusing) {
  check_names<Direction>("Direction", parse_direction);
  check_names<DatasetLayout>("DatasetLayout", parse_layout);
  check_names<Preprocess>("Preprocess", parse_preprocess);
  check_names<ResizeFilter>("ResizeFilter", parse_resize_filter);
  check_names<Norm>("Norm", parse_norm);
  check_names<Upsampling>("Upsampling", parse_upsampling);
  check_names<InitType>("InitType", parse_init_type);
  check_names<Precision>("Precision", parse_precision);
  check_names<TransposedConv>("TransposedConv", parse_transposed_conv);
  check_names<GanMode>("GanMode", parse_gan_mode);
  check_names<LrPolicy>("LrPolicy", parse_lr_policy);
  check_names<BadFilePolicy>("BadFilePolicy", parse_bad_file_policy);
}

// The other words some parsers take besides names<E>().
TEST(Names, AliasesParseToTheirValues) {
  EXPECT_EQ(parse_upsampling("resize-conv"), Upsampling::kResizeNearest);
  EXPECT_EQ(parse_precision("float32"), Precision::kFloat32);
  EXPECT_EQ(parse_precision("bfloat16"), Precision::kBFloat16);
  const Precision automatic = parse_precision("auto");
  EXPECT_TRUE(automatic == Precision::kFloat32 || automatic == Precision::kBFloat16);
}

}  // namespace
}  // namespace pix2pix
