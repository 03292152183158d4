// zarrcrop._core._testing: hooks for the tests and benchmarks (kernels at every alignment, the
// SIGBUS guard with a file truncated mid-read, the streaming threshold). Not the read path.
#include <unistd.h>

#include <cstdint>

#include "../core/codec/bitshuffle.hpp"
#include "../core/errors.hpp"
#include "../core/io/chunk_source.hpp"
#include "../core/io/fetch_ahead.hpp"
#include "../core/io/file_map.hpp"
#include "../core/io/read_ahead.hpp"
#include "../core/io/read_queue.hpp"
#include "../core/stitch/stitcher.hpp"
#include "bindings.hpp"
#include "native_call.hpp"

void register_testing(py::module_& m) {
    py::module_ t = m.def_submodule("_testing", "Test and benchmark hooks (private).");
    t.def(
        "mapped_read_probe",
        [](const std::string& path, std::size_t offset, std::size_t length,
           std::int64_t shrink_to) -> py::bytes {
            // Opens `path` as a chunk file, maps it through the process cache, optionally
            // truncates it (as another process might, between a read's open and its
            // decoding), then copies [offset, offset + length) out of the mapping under the
            // SIGBUS guard and checks the file after, as decode_block and finish_job do.
            std::string out;
            zarrcrop_bindings::run_native([&](const zarrcrop::CancelFlags&) {
                const std::size_t slash = path.find_last_of('/');
                const zarrcrop::FileChunkSource source(
                    slash == std::string::npos ? "." : path.substr(0, slash));
                const zarrcrop::ChunkFile file = source.open(
                    slash == std::string::npos ? path : path.substr(slash + 1), SIZE_MAX);
                if (!file.is_open()) throw std::invalid_argument("no file " + path);
                const zarrcrop::MappingRef m = zarrcrop::process_mappings().get(file);
                if (!m) throw std::runtime_error("not mapped (mapping off or file too large)");
                if (offset > m->size() || length > m->size() - offset)
                    throw std::out_of_range("range outside the file");
                if (shrink_to >= 0 && ::truncate(path.c_str(), shrink_to) != 0)
                    throw std::runtime_error("truncate failed");
                out.resize(length);
                {
                    const zarrcrop::MappedReadGuard guard(*m);
                    const volatile uint8_t* src = m->data() + offset;
                    for (std::size_t i = 0; i < length; ++i) out[i] = static_cast<char>(src[i]);
                }
                if (!zarrcrop::mapping_intact(*m, file.fd()))
                    throw zarrcrop::ChunkError("chunk file " + path +
                                               " changed size while it was read");
            });
            return py::bytes(out);
        },
        py::arg("path"), py::arg("offset"), py::arg("length"), py::arg("shrink_to") = -1,
        "Test hook: read bytes of a file through the mapping cache and the SIGBUS guard.");
    t.def(
        "stream_copy",
        [](const py::bytes& data, std::size_t offset, std::size_t pad) -> py::bytes {
            // `pad` bytes of 0xAA, then the data copied with stream_copy at `offset`.
            const std::string src = data;
            std::string dst(offset + src.size() + pad, '\xAA');
            zarrcrop::stream_copy(reinterpret_cast<uint8_t*>(dst.data()) + offset,
                                  reinterpret_cast<const uint8_t*>(src.data()), src.size());
            zarrcrop::stream_fence();
            return py::bytes(dst);
        },
        py::arg("data"), py::arg("offset"), py::arg("pad") = 64,
        "Test hook: copy with non-temporal stores into a 0xAA-filled buffer at offset.");
    t.def(
        "read_ahead_counts",
        []() {
            const zarrcrop::ReadAheadCounts c = zarrcrop::read_ahead_counts();
            py::dict d;
            d["cold_chunks"] = c.cold_chunks;
            d["requests"] = c.requests;
            d["bytes"] = c.bytes;
            return d;
        },
        "Chunks found cold and requests to the device (read-ahead advice and queued reads) and "
        "their bytes since the last reset.");
    t.def(
        "read_queue_counts",
        []() {
            const zarrcrop::ReadQueueCounts c = zarrcrop::read_queue_counts();
            py::dict d;
            d["reads"] = c.reads;
            d["bytes"] = c.bytes;
            d["max_in_flight"] = c.max_in_flight;
            d["max_buffered"] = c.max_buffered;
            return d;
        },
        "Reads of the I/O stage's queue since the last reset: reads, bytes, most in flight and "
        "most bytes held at once.");
    t.def("reset_read_queue_counts", &zarrcrop::reset_read_queue_counts,
          "Zeroes read_queue_counts().");
    t.def(
        "read_budget", [] { return zarrcrop::get_read_queue().budget_bytes; },
        "Most bytes the I/O stage holds read ahead of decoding, over all reads.");
    t.def(
        "set_read_budget",
        [](std::size_t bytes) {
            zarrcrop::ReadQueueSettings s = zarrcrop::get_read_queue();
            s.budget_bytes = bytes;
            zarrcrop::set_read_queue(s);
        },
        "Test hook: the I/O stage's budget (0: the default).");
    t.def("reset_read_ahead_counts", &zarrcrop::reset_read_ahead_counts,
          "Zeroes read_ahead_counts().");
    t.def("wait_fetch_ahead", &zarrcrop::wait_ahead_idle, py::call_guard<py::gil_scoped_release>(),
          "Waits until the fetch-ahead threads (prefetch on object stores) are idle.");
    t.def("stream_threshold", &zarrcrop::stream_threshold,
          "Outputs larger than this many bytes are written with non-temporal stores.");
    t.def(
        "bitunshuffle_u8",
        [](const py::bytes& data, const std::string& impl) -> py::object {
            const std::string src = data;
            if (src.size() % 8 != 0) throw std::invalid_argument("length must be a multiple of 8");
            std::string dst(src.size(), '\0');
            const auto* in = reinterpret_cast<const uint8_t*>(src.data());
            auto* out = reinterpret_cast<uint8_t*>(dst.data());
            if (impl == "auto") {
                zarrcrop::bitunshuffle_u8(in, out, src.size());
            } else if (!zarrcrop::bitunshuffle_u8_with(impl.c_str(), in, out, src.size())) {
                return py::none();
            }
            return py::bytes(dst);
        },
        py::arg("data"), py::arg("impl") = "auto",
        "Test hook: undo Blosc's bitshuffle of 1-byte items (None if impl is unavailable).");
    t.def(
        "bitunshuffle_u8_range",
        [](const py::bytes& data, std::size_t start, std::size_t stop,
           const std::string& impl) -> py::object {
            const std::string src = data;
            if (src.size() % 8 != 0) throw std::invalid_argument("length must be a multiple of 8");
            if (start > stop || stop > src.size())
                throw std::invalid_argument("need 0 <= start <= stop <= len(data)");
            std::string dst(stop - start, '\0');
            const auto* in = reinterpret_cast<const uint8_t*>(src.data());
            auto* out = reinterpret_cast<uint8_t*>(dst.data());
            const std::size_t planes = src.size() / 8;
            if (impl == "auto") {
                zarrcrop::bitunshuffle_u8_range(in, planes, start, stop, out);
            } else if (!zarrcrop::bitunshuffle_u8_range_with(impl.c_str(), in, planes, start, stop,
                                                             out)) {
                return py::none();
            }
            return py::bytes(dst);
        },
        py::arg("data"), py::arg("start"), py::arg("stop"), py::arg("impl") = "auto",
        "Test hook: items [start, stop) of a bit-shuffled block of 1-byte items.");
    t.def(
        "bitunshuffle_items",
        [](const py::bytes& data, std::size_t typesize, std::size_t start,
           std::size_t stop) -> py::bytes {
            const std::string src = data;
            if (typesize == 0 || src.size() % typesize != 0 || (src.size() / typesize) % 8 != 0)
                throw std::invalid_argument("need a multiple of 8 items of typesize bytes");
            const std::size_t n = src.size() / typesize;
            if (start > stop || stop > n)
                throw std::invalid_argument("need 0 <= start <= stop <= items");
            std::string dst((stop - start) * typesize, '\0');
            std::string tmp(dst.size(), '\0');
            zarrcrop::blosc1_bitunshuffle_items(
                reinterpret_cast<const uint8_t*>(src.data()), n, typesize, start, stop,
                reinterpret_cast<uint8_t*>(dst.data()), reinterpret_cast<uint8_t*>(tmp.data()));
            return py::bytes(dst);
        },
        py::arg("data"), py::arg("typesize"), py::arg("start"), py::arg("stop"),
        "Test hook: items [start, stop) of a Blosc1 bit-shuffled block of typesize-byte items.");
}
