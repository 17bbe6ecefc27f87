// Python face of csrc/decode: probe, samplers/output specs, single and batched decoding, the
// streaming iterator, audio and subtitles. Decoding runs with the GIL released; frames come
// back as numpy arrays viewing native buffers (a capsule keeps each buffer alive).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>

#include "decode/audio_decoder.h"
#include "decode/av_handles.h"
#include "decode/batch_decoder.h"
#include "decode/frame_converter.h"
#include "decode/frame_sampler.h"
#include "decode/probe.h"
#include "decode/subtitles.h"

namespace py = pybind11;
using namespace ivcr::decode;

namespace {

py::dict stream_to_dict(const StreamInfo& s) {
  py::dict d;
  d["index"] = s.index;
  d["type"] = s.type;
  d["codec"] = s.codec;
  d["start_time"] = s.start_time;
  d["duration"] = s.duration;
  d["language"] = s.language;
  if (s.type == "video") {
    d["width"] = s.width;
    d["height"] = s.height;
    d["avg_fps"] = s.avg_fps;
    d["real_fps"] = s.real_fps;
    d["num_frames"] = s.num_frames;
    d["rotation"] = s.rotation;
    d["pix_fmt"] = s.pix_fmt;
  } else if (s.type == "audio") {
    d["sample_rate"] = s.sample_rate;
    d["channels"] = s.channels;
  }
  return d;
}

py::dict info_to_dict(const VideoInfo& v) {
  py::dict d;
  d["path"] = v.path;
  d["format"] = v.format;
  d["duration"] = v.duration;
  d["start_time"] = v.start_time;
  d["bit_rate"] = v.bit_rate;
  d["video_stream"] = v.video_stream;
  d["frame_count_estimate"] = v.frame_count_estimate;
  py::list streams;
  for (const StreamInfo& s : v.streams) streams.append(stream_to_dict(s));
  d["streams"] = streams;
  return d;
}

template <typename T>
py::array vector_to_array(std::vector<T>&& v) {
  auto* owned = new std::vector<T>(std::move(v));
  py::capsule keep(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({py::ssize_t(owned->size())}, {py::ssize_t(sizeof(T))}, owned->data(), keep);
}

py::object frames_to_array(const DecodedFrames& r) {
  if (!r.error.empty()) return py::none();
  auto* owner = new std::shared_ptr<NativeBuffer>(r.buffer);
  py::capsule keep(owner, [](void* p) { delete static_cast<std::shared_ptr<NativeBuffer>*>(p); });
  const py::ssize_t n = r.n, h = r.height, w = r.width;
  void* data = r.buffer ? r.buffer->data() : nullptr;
  if (r.is_float) {
    static float empty_f = 0;
    if (!data) data = &empty_f;
    const py::ssize_t f = sizeof(float);
    return py::array_t<float>({n, py::ssize_t(3), h, w}, {3 * h * w * f, h * w * f, w * f, f},
                              static_cast<float*>(data), keep);
  }
  static uint8_t empty_u = 0;
  if (!data) data = &empty_u;
  return py::array_t<uint8_t>({n, h, w, py::ssize_t(3)}, {h * w * 3, w * 3, py::ssize_t(3), py::ssize_t(1)},
                              static_cast<uint8_t*>(data), keep);
}

py::dict result_to_dict(DecodedFrames&& r) {
  py::dict d;
  d["error"] = r.error;
  d["frames"] = frames_to_array(r);
  d["pts"] = vector_to_array(std::move(r.pts));
  d["requested"] = vector_to_array(std::move(r.requested));
  d["indices"] = vector_to_array(std::move(r.indices));
  d["frames_decoded"] = r.frames_decoded;
  d["seeks"] = r.seeks;
  d["info"] = r.error.empty() ? py::object(info_to_dict(r.info)) : py::object(py::none());
  return d;
}

}  // namespace

void bind_decode(py::module_& m) {
  py::module_ d = m.def_submodule("decode", "FFmpeg-based batched video decoding");
  py::register_exception<DecodeError>(d, "DecodeError", PyExc_RuntimeError);

  py::enum_<SamplerSpec::Kind>(d, "SamplerKind")
      .value("uniform", SamplerSpec::Kind::Uniform)
      .value("fps", SamplerSpec::Kind::Fps)
      .value("timestamps", SamplerSpec::Kind::Timestamps)
      .value("all", SamplerSpec::Kind::All);
  py::class_<SamplerSpec>(d, "SamplerSpec")
      .def(py::init<>())
      .def_readwrite("kind", &SamplerSpec::kind)
      .def_readwrite("num_frames", &SamplerSpec::num_frames)
      .def_readwrite("fps", &SamplerSpec::fps)
      .def_readwrite("window_offset", &SamplerSpec::window_offset)
      .def_readwrite("timestamps", &SamplerSpec::timestamps)
      .def_readwrite("start", &SamplerSpec::start)
      .def_readwrite("end", &SamplerSpec::end);

  py::enum_<OutputSpec::Resize>(d, "ResizeMode")
      .value("none", OutputSpec::Resize::None)
      .value("exact", OutputSpec::Resize::Exact)
      .value("shorter_side", OutputSpec::Resize::ShorterSide);
  py::enum_<Interpolation>(d, "Interpolation")
      .value("bilinear", Interpolation::Bilinear)
      .value("bicubic", Interpolation::Bicubic)
      .value("area", Interpolation::Area)
      .value("nearest", Interpolation::Nearest);
  py::class_<OutputSpec>(d, "OutputSpec")
      .def(py::init<>())
      .def_readwrite("resize", &OutputSpec::resize)
      .def_readwrite("height", &OutputSpec::height)
      .def_readwrite("width", &OutputSpec::width)
      .def_readwrite("shorter_side", &OutputSpec::shorter_side)
      .def_readwrite("center_crop", &OutputSpec::center_crop)
      .def_readwrite("interpolation", &OutputSpec::interpolation)
      .def_readwrite("to_float", &OutputSpec::to_float)
      .def_readwrite("apply_rotation", &OutputSpec::apply_rotation)
      .def_property(
          "mean", [](const OutputSpec& o) { return std::vector<float>(o.mean, o.mean + 3); },
          [](OutputSpec& o, const std::vector<float>& v) {
            if (v.size() != 3) throw py::value_error("mean needs 3 values (R, G, B)");
            std::copy(v.begin(), v.end(), o.mean);
          })
      .def_property(
          "std", [](const OutputSpec& o) { return std::vector<float>(o.std, o.std + 3); },
          [](OutputSpec& o, const std::vector<float>& v) {
            if (v.size() != 3) throw py::value_error("std needs 3 values (R, G, B)");
            std::copy(v.begin(), v.end(), o.std);
          });

  d.def(
      "probe",
      [](const std::string& path) {
        VideoInfo v;
        {
          py::gil_scoped_release nogil;
          v = probe(path);
        }
        return info_to_dict(v);
      },
      py::arg("path"), "Container and stream facts from the headers (no decoding).");

  d.def(
      "sample_times",
      [](const SamplerSpec& s, double start, double duration) { return sample_times(s, start, duration); },
      py::arg("sampler"), py::arg("start"), py::arg("duration"), "Target times a sampler picks for a video.");

  d.def(
      "decode_video",
      [](const std::string& path, const SamplerSpec& s, const OutputSpec& o, int threads, int stream) {
        DecodedFrames r;
        {
          py::gil_scoped_release nogil;
          r = decode_video(path, s, o, threads, stream);
        }
        return result_to_dict(std::move(r));
      },
      py::arg("path"), py::arg("sampler"), py::arg("output"), py::arg("threads") = 0, py::arg("stream") = -1,
      "Decode the sampled frames of one video; raises DecodeError on failure.");

  d.def(
      "decode_batch",
      [](const std::vector<std::string>& paths, const SamplerSpec& s, const OutputSpec& o, int threads) {
        std::vector<DecodedFrames> rs;
        {
          py::gil_scoped_release nogil;
          rs = decode_batch(paths, s, o, threads);
        }
        py::list out;
        for (DecodedFrames& r : rs) out.append(result_to_dict(std::move(r)));
        return out;
      },
      py::arg("paths"), py::arg("sampler"), py::arg("output"), py::arg("threads") = 0,
      "Decode many videos in parallel; a failed video gives an entry with 'error' set.");

  d.def(
      "plan_batch",
      [](std::size_t n, int threads) {
        BatchPlan p = plan_batch(n, threads);
        return py::make_tuple(p.video_workers, p.codec_threads);
      },
      py::arg("n_videos"), py::arg("threads") = 0, "(video workers, codec threads) decode_batch would use.");

  py::class_<FrameStream>(d, "FrameStream")
      .def(py::init([](const std::string& path, const SamplerSpec& s, const OutputSpec& o, int threads,
                       int chunk, int stream) {
             py::gil_scoped_release nogil;
             return std::make_unique<FrameStream>(path, s, o, threads, chunk, stream);
           }),
           py::arg("path"), py::arg("sampler"), py::arg("output"), py::arg("threads") = 0,
           py::arg("chunk_size") = 16, py::arg("stream") = -1)
      .def("next_chunk",
           [](FrameStream& fs) {
             DecodedFrames r;
             {
               py::gil_scoped_release nogil;
               r = fs.next_chunk();
             }
             return result_to_dict(std::move(r));
           })
      .def_property_readonly("info", [](const FrameStream& fs) { return info_to_dict(fs.info()); });

  d.def(
      "decode_audio",
      [](const std::string& path, double start, double end, int sample_rate, int stream) {
        AudioSamples a;
        {
          py::gil_scoped_release nogil;
          a = decode_audio(path, start, end, sample_rate, stream);
        }
        const double t0 = a.start_time;
        return py::make_tuple(vector_to_array(std::move(a.samples)), a.sample_rate, t0);
      },
      py::arg("path"), py::arg("start") = -1.0, py::arg("end") = -1.0, py::arg("sample_rate") = 16000,
      py::arg("stream") = -1, "Mono float32 samples at sample_rate: (samples, sample_rate, start_time).");

  d.def(
      "text_subtitle_streams",
      [](const std::string& path) {
        py::gil_scoped_release nogil;
        return text_subtitle_streams(path);
      },
      py::arg("path"));
  d.def(
      "read_subtitle_stream",
      [](const std::string& path, int stream) {
        std::vector<SubtitleCue> cues;
        {
          py::gil_scoped_release nogil;
          cues = read_subtitle_stream(path, stream);
        }
        py::list out;
        for (const SubtitleCue& c : cues) out.append(py::make_tuple(c.start, c.end, c.text));
        return out;
      },
      py::arg("path"), py::arg("stream") = -1, "(start, end, text) cues of one text subtitle stream.");
  d.def("ass_to_text", &ass_to_text, py::arg("ass"));
}
