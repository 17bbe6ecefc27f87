#include "engine/npy.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/error.h"

namespace ivcr::engine {

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Npy map_npy(const std::string& path, const std::string& descr) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail(Status::IndexDamaged, "cannot read " + path);
  const size_t size = size_t(st.st_size);
  std::ifstream f(path, std::ios::binary);
  char head[10];
  f.read(head, 10);
  if (!f || std::memcmp(head, "\x93NUMPY", 6) != 0) fail(Status::IndexDamaged, path + " is not a .npy file");
  size_t hlen = 0, start = 0;
  if (head[6] == 1) {
    hlen = size_t(uint8_t(head[8])) | size_t(uint8_t(head[9])) << 8;
    start = 10;
  } else {
    char more[2];
    f.read(more, 2);
    hlen = size_t(uint8_t(head[8])) | size_t(uint8_t(head[9])) << 8 | size_t(uint8_t(more[0])) << 16 |
           size_t(uint8_t(more[1])) << 24;
    start = 12;
  }
  std::string header(hlen, '\0');
  f.read(header.data(), std::streamsize(hlen));
  if (!f) fail(Status::IndexDamaged, path + ": short header");
  Npy out;
  const size_t d = header.find("'descr':");
  const size_t q1 = header.find('\'', d + 8), q2 = header.find('\'', q1 + 1);
  out.descr = header.substr(q1 + 1, q2 - q1 - 1);
  if (header.find("'fortran_order': False") == std::string::npos)
    fail(Status::IndexDamaged, path + ": expected C order");
  if (!descr.empty() && out.descr != descr)
    fail(Status::IndexDamaged, path + " holds " + out.descr + ", expected " + descr);
  const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  for (std::string part; std::getline(dims, part, ',');)
    if (part.find_first_not_of(' ') != std::string::npos) out.shape.push_back(std::stoul(part));
  size_t item = out.descr.size() >= 3 ? size_t(std::stoul(out.descr.substr(2))) : 0, n = 1;
  for (size_t s : out.shape) n *= s;
  const size_t data_start = start + hlen;
  if (data_start + n * item > size) fail(Status::IndexDamaged, path + " is shorter than its header says");
  out.map = std::make_shared<Mapping>(path, data_start + n * item);
  out.data = static_cast<const char*>(out.map->data()) + data_start;
  return out;
}

void make_resident(Npy& n) {
  size_t count = 1;
  for (size_t d : n.shape) count *= d;
  const size_t item = n.descr.size() >= 3 ? size_t(std::stoul(n.descr.substr(2))) : 0;
  if (!n.data || item == 0 || count == 0) return;
  const void* src = n.data;
  n.map = Mapping::resident(count * item, [&](void* dst) { std::memcpy(dst, src, count * item); });
  n.data = n.map->data();
}

}  // namespace ivcr::engine
