// What the HTML pages (report.html, the results pages) share.
#pragma once

#include <string>

namespace pix2pix::detail {

/// `text` with &, <, >, " and ' as character references: safe inside elements and attributes.
std::string escape_html(const std::string& text);

}  // namespace pix2pix::detail
