// The engine's one exception type: a status (the C ABI's codes) and a message. Every engine
// function may throw it; the C ABI catches it (and std::bad_alloc, and anything else as an
// internal error) at the boundary, so nothing crosses into C.
#pragma once
#include <stdexcept>
#include <string>

namespace ivcr::engine {

enum class Status { Ok = 0, InvalidArgument = 1, NotFound = 2, IndexDamaged = 3, OutOfMemory = 4, Unsupported = 5,
                    Internal = 6 };

class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status(status) {}
  Status status;
};

[[noreturn]] inline void fail(Status status, const std::string& message) { throw Error(status, message); }

}  // namespace ivcr::engine
