// A query text's terms as the engine finds them (csrc/engine/lexicon.cpp), for
// tests/engine/test_lexicon_terms.py to hold against the Python definition (words.py,
// lexicon.py) text by text. Usage: lexicon_terms MODEL_DIR < texts (one a line, UTF-8); prints a
// line per text: its terms split by tabs, each "word \x1f rarity \x1f form \x1e form ...".
#include <cstdio>
#include <iostream>
#include <string>

#include "engine/error.h"
#include "engine/lexicon.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: lexicon_terms MODEL_DIR < texts\n");
    return 2;
  }
  try {
    auto lexicon = ivcr::engine::Lexicon::load(argv[1]);
    std::string text;
    while (std::getline(std::cin, text)) {
      std::string out;
      for (const auto& t : lexicon->terms(text)) {
        char rarity[32];
        std::snprintf(rarity, sizeof rarity, "%.17g", t.rarity);
        out += (out.empty() ? "" : "\t") + t.word + "\x1f" + rarity + "\x1f";
        for (size_t i = 0; i < t.forms.size(); ++i) out += (i ? "\x1e" : "") + t.forms[i];
      }
      std::printf("%s\n", out.c_str());
    }
  } catch (const ivcr::engine::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
