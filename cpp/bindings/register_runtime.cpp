// Process-wide runtime: thread pool and file mapping settings, library versions, and test
// hooks for kernels and the SIGBUS guard.
#include <unistd.h>

#include <cstdint>

#include "../core/bitshuffle.hpp"
#include "../core/blosc_decoder.hpp"
#include "../core/codecs.hpp"
#include "../core/chunk_source.hpp"
#include "../core/errors.hpp"
#include "../core/file_map.hpp"
#include "../core/stitcher.hpp"
#include "../core/thread_pool.hpp"
#include "../core/shard_index.hpp"
#include "../core/worker_scratch.hpp"
#include "bindings.hpp"
#include "native_call.hpp"

void register_runtime(py::module_& m) {
    m.def("set_num_threads", &zarrcrop::set_num_threads, py::arg("n"),
          "Size the native thread pool (the calling thread counts as one).");
    m.attr("MAX_THREADS") = zarrcrop::kMaxThreads;
    m.def("get_num_threads", &zarrcrop::get_num_threads,
          "Size of the native thread pool (default: CPUs in this process's affinity mask).");
    m.def("available_cpus", &zarrcrop::available_cpus,
          "CPUs this process may run on (sched_getaffinity).");
    m.def(
        "set_map_limit",
        [](std::size_t nbytes) { zarrcrop::process_mappings().set_limit(nbytes); },
        py::arg("nbytes"),
        "Most bytes of chunk files kept mapped between reads (0: read with pread only).");
    m.def(
        "get_map_limit", [] { return zarrcrop::process_mappings().limit(); },
        "Most bytes of chunk files kept mapped between reads.");
    m.attr("DEFAULT_MAP_LIMIT") = zarrcrop::kDefaultMapLimit;
    m.def(
        "map_info",
        [] {
            const zarrcrop::MapStats st = zarrcrop::process_mappings().stats();
            py::dict d;
            d["limit"] = st.limit;
            d["mapped"] = st.mapped;
            d["files"] = st.files;
            d["hits"] = st.hits;
            d["misses"] = st.misses;
            return d;
        },
        "Mapped chunk files: limit and mapped bytes, files held, hits and misses.");
    m.def(
        "_mapped_read_probe",
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
    m.def(
        "_stream_copy",
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
    m.def("_stream_threshold", &zarrcrop::stream_threshold,
          "Outputs larger than this many bytes are written with non-temporal stores.");
    m.def(
        "clear_maps", [] { zarrcrop::process_mappings().clear(); },
        "Unmap every chunk file held (each once no read uses it) and reset the counters.");
    m.def(
        "set_index_cache_limit",
        [](std::size_t nbytes) { zarrcrop::process_shard_indexes().set_limit(nbytes); },
        py::arg("nbytes"), "Most bytes of parsed shard indexes kept between reads.");
    m.def(
        "get_index_cache_limit", [] { return zarrcrop::process_shard_indexes().limit(); },
        "Most bytes of parsed shard indexes kept between reads.");
    m.attr("DEFAULT_INDEX_CACHE_LIMIT") = zarrcrop::kDefaultIndexCacheLimit;
    m.def(
        "index_cache_info",
        [] {
            const zarrcrop::IndexCacheStats st = zarrcrop::process_shard_indexes().stats();
            py::dict d;
            d["limit"] = st.limit;
            d["size"] = st.size;
            d["entries"] = st.entries;
            d["hits"] = st.hits;
            d["misses"] = st.misses;
            return d;
        },
        "Parsed shard indexes held: limit and size in bytes, entries, hits and misses.");
    m.def(
        "clear_index_cache", [] { zarrcrop::process_shard_indexes().clear(); },
        "Drop every parsed shard index held and reset the counters.");
    m.attr("SCRATCH_KEEP_BYTES") = zarrcrop::kKeepScratchBytes;
    m.attr("blosc_version") = zarrcrop::blosc_library_version();
    m.def("gzip_available", &zarrcrop::gzip_available,
          "Whether gzip chunks can be decoded natively (the bundled zlib-ng is version 2).");
    m.def(
        "_bitunshuffle_u8",
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
    m.def(
        "_bitunshuffle_u8_range",
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
            } else if (!zarrcrop::bitunshuffle_u8_range_with(impl.c_str(), in, planes, start,
                                                             stop, out)) {
                return py::none();
            }
            return py::bytes(dst);
        },
        py::arg("data"), py::arg("start"), py::arg("stop"), py::arg("impl") = "auto",
        "Test hook: items [start, stop) of a bit-shuffled block of 1-byte items.");
    m.def(
        "_bitunshuffle_items",
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
