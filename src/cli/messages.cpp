#include "messages.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <regex>

namespace pix2pix::cli {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::vector<const CLI::App*> parsed_chain(const CLI::App& app) {
  const CLI::App* root = &app;
  while (root->get_parent() != nullptr) root = root->get_parent();
  std::vector<const CLI::App*> chain = {root};
  while (!chain.back()->get_subcommands().empty())
    chain.push_back(chain.back()->get_subcommands().front());
  return chain;
}

std::string flag_for(const std::string& field, const CLI::App& app) {
  // Fields whose flag is not the field's own name.
  static const std::map<std::string, std::string> kAliases = {{"backend", "dist-backend"},
                                                              {"timeout_seconds", "dist-timeout"},
                                                              {"real_dir", "real"},
                                                              {"fake_dir", "fake"}};
  std::string wanted = field;
  if (auto alias = kAliases.find(field); alias != kAliases.end()) wanted = alias->second;
  std::replace(wanted.begin(), wanted.end(), '_', '-');
  const std::vector<const CLI::App*> chain = parsed_chain(app);
  for (auto it = chain.rbegin(); it != chain.rend(); ++it)
    for (const CLI::Option* option : (*it)->get_options())
      for (const std::string& name : option->get_lnames())
        if (lower(name) == lower(wanted)) return "--" + name;
  return "";
}

std::string with_flags(const std::string& text, const CLI::App& app) {
  static const std::regex kCall(R"(`check_dataset\(([^)`]*)\)`)");
  const std::string commands = std::regex_replace(text, kCall, "`pix2pix data check $1`");
  static const std::regex kField(R"(`([A-Za-z_][A-Za-z0-9_]*)`)");
  std::string out;
  auto last = commands.cbegin();
  for (std::sregex_iterator it(commands.begin(), commands.end(), kField), end; it != end; ++it) {
    const std::string flag = flag_for((*it)[1].str(), app);
    out.append(last, (*it)[0].first);
    out += flag.empty() ? (*it)[0].str() : flag;
    last = (*it)[0].second;
  }
  out.append(last, commands.cend());
  return out;
}

std::string message_of(const Error& error, const CLI::App& app) {
  std::string message = error.what();
  message = with_flags(message.substr(0, message.find('\n')), app);
  const std::string& field = error.field();
  if (field.empty() || message.compare(0, field.size(), field) != 0) return message;
  std::string flags;
  for (size_t start = 0; start <= field.size();) {
    const size_t end = std::min(field.find('/', start), field.size());
    const std::string one = field.substr(start, end - start), flag = flag_for(one, app);
    flags += (flags.empty() ? "" : "/") + (flag.empty() ? one : flag);
    start = end + 1;
  }
  return flags + message.substr(field.size());
}

}  // namespace pix2pix::cli
