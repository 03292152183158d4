// Binding for CropReader. Arguments are converted and checked with the GIL held, and every
// argument the read uses is a private copy taken then (the caller's arrays may change while
// the GIL is released); the read itself runs through run_native: it touches only the C++
// reader (immutable after construction), those copies and the output buffer, which the
// buffer view keeps alive.
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "../core/errors.hpp"
#include "../core/reader.hpp"
#include "bindings.hpp"
#include "native_call.hpp"

namespace {

// The `progress(written, version)` a streaming fetch function is given: tells the core how
// many bytes of `out` are in. Valid during the fetch call only (later calls do nothing: the
// buffer may be another read's by then).
struct StreamProgress {
    const zarrcrop::FetchProgress* fn = nullptr;
    void call(std::size_t written, const std::optional<std::string>& version) const {
        if (fn != nullptr) (*fn)(written, version ? *version : std::string());
    }
};

// A FetchFn calling the Python object-store client `fetch(key, offset, length, from_end, out)`
// (out: a writable memoryview of `length` bytes, valid during the call) that returns
// (found, object_size, offset, nbytes, version). Its OSError becomes ChunkIoError (errno
// kept), any other exception ChunkError, both with the client's message. A client with a true
// `streams` attribute is also given `progress` (a StreamProgress) as a sixth argument.
zarrcrop::FetchFn python_fetch(py::object fn) {
    const bool streams = py::bool_(py::getattr(fn, "streams", py::bool_(false)));
    // Released with the GIL held (or leaked at interpreter exit).
    std::shared_ptr<py::object> callable(new py::object(std::move(fn)), [](py::object* o) {
        if (Py_IsInitialized() != 0 && PyGILState_Check() == 0) {
            try {
                zarrcrop_bindings::call_python([o] { delete o; });
                return;
            } catch (const std::exception&) {
                return;  // exiting: leak it
            }
        }
        delete o;
    });
    return [callable, streams](const std::string& key, std::size_t offset, std::size_t len,
                               bool from_end, uint8_t* dst,
                               const zarrcrop::FetchProgress* progress) {
        zarrcrop::ObjectRange got;
        std::string error;
        int error_errno = 0;
        bool io_error = false;
        try {
            zarrcrop_bindings::call_python([&] {
                try {
                    py::memoryview out = py::memoryview::from_memory(
                        dst, static_cast<py::ssize_t>(len), /*readonly=*/false);
                    py::tuple r;
                    if (streams && progress != nullptr) {
                        const py::object told = py::cast(StreamProgress{progress});
                        try {
                            r = (*callable)(key, offset, len, from_end, out, told);
                        } catch (...) {
                            told.cast<StreamProgress&>().fn = nullptr;
                            throw;
                        }
                        told.cast<StreamProgress&>().fn = nullptr;
                    } else {
                        r = (*callable)(key, offset, len, from_end, out);
                    }
                    if (r.size() != 5) throw std::invalid_argument("fetch must return 5 values");
                    got.found = r[0].cast<bool>();
                    got.object_size = r[1].cast<std::size_t>();
                    got.offset = r[2].cast<std::size_t>();
                    got.bytes = r[3].cast<std::size_t>();
                    got.version = r[4].is_none() ? std::string() : r[4].cast<std::string>();
                } catch (py::error_already_set& e) {
                    io_error = e.matches(PyExc_OSError);
                    if (io_error) {
                        const py::object no = e.value().attr("errno");
                        error_errno = no.is_none() ? EIO : no.cast<int>();
                    }
                    error = py::str(e.value()).cast<std::string>();
                } catch (const std::exception& e) {
                    error = e.what();
                }
            });
        } catch (const std::exception& e) {
            throw zarrcrop::ChunkIoError(std::string("cannot fetch ") + key + ": " + e.what(),
                                         ECANCELED);
        }
        if (io_error) throw zarrcrop::ChunkIoError(error, error_errno);
        if (!error.empty()) throw zarrcrop::ChunkError(error);
        if (got.bytes > len)
            throw zarrcrop::ChunkError("fetch of " + key + " returned more bytes than asked for");
        return got;
    };
}

std::shared_ptr<zarrcrop::CropReader> make_reader(
    std::string name, std::string root, std::vector<int64_t> shape, std::vector<int64_t> chunks,
    std::size_t itemsize, const std::vector<std::string>& codecs, std::string key_prefix,
    const std::string& key_separator, const py::bytes& fill, std::size_t cache_bytes,
    std::size_t swap_width, const std::string& order, std::vector<int64_t> shard_shape,
    const std::string& shard_index_location, bool shard_index_crc32c, py::object fetch) {
    zarrcrop::ArraySpec spec;
    spec.name = std::move(name);
    spec.root = std::move(root);
    spec.shape = std::move(shape);
    spec.chunks = std::move(chunks);
    spec.itemsize = itemsize;
    for (const std::string& codec : codecs) {
        if (codec == "blosc")
            spec.codecs.push_back(zarrcrop::Codec::Blosc);
        else if (codec == "zstd")
            spec.codecs.push_back(zarrcrop::Codec::Zstd);
        else if (codec == "crc32c")
            spec.codecs.push_back(zarrcrop::Codec::Crc32c);
        else if (codec == "gzip")
            spec.codecs.push_back(zarrcrop::Codec::Gzip);
        else
            throw std::invalid_argument("unknown codec '" + codec + "'");
    }
    if (order != "C" && order != "F") throw std::invalid_argument("order must be 'C' or 'F'");
    spec.fortran_order = order == "F";
    spec.swap_width = swap_width;
    spec.shard_shape = std::move(shard_shape);
    if (shard_index_location != "end" && shard_index_location != "start")
        throw std::invalid_argument("shard index location must be 'end' or 'start'");
    spec.shard_index_at_start = shard_index_location == "start";
    spec.shard_index_crc32c = shard_index_crc32c;
    if (key_separator.size() != 1) throw std::invalid_argument("key separator must be one char");
    spec.keys.prefix = std::move(key_prefix);
    spec.keys.separator = key_separator[0];
    const std::string fill_bytes = fill;
    spec.fill_value.assign(fill_bytes.begin(), fill_bytes.end());
    zarrcrop::FetchFn fetch_fn;
    if (!fetch.is_none()) fetch_fn = python_fetch(std::move(fetch));
    return std::make_shared<zarrcrop::CropReader>(std::move(spec), cache_bytes,
                                                  std::move(fetch_fn));
}

std::vector<zarrcrop::DimSelection> to_selection(const std::vector<int64_t>& starts,
                                                 const std::vector<int64_t>& steps,
                                                 const std::vector<int64_t>& counts) {
    if (starts.size() != steps.size() || starts.size() != counts.size())
        throw std::invalid_argument("starts, steps and counts must have the same length");
    std::vector<zarrcrop::DimSelection> sel(starts.size());
    for (std::size_t d = 0; d < sel.size(); ++d) sel[d] = {starts[d], steps[d], counts[d]};
    return sel;
}

void check_contiguous(const py::buffer_info& info, std::size_t itemsize) {
    if (info.itemsize != static_cast<py::ssize_t>(itemsize))
        throw std::invalid_argument("output buffer item size does not match the array");
    // C-contiguity: strides must be the packed row-major ones.
    py::ssize_t expect = info.itemsize;
    for (std::size_t d = static_cast<std::size_t>(info.ndim); d-- > 0;) {
        if (info.shape[d] != 1 && info.strides[d] != expect)
            throw std::invalid_argument("output buffer must be C-contiguous");
        expect *= info.shape[d];
    }
}

void read_into(const zarrcrop::CropReader& reader, const std::vector<int64_t>& starts,
               const std::vector<int64_t>& steps, const std::vector<int64_t>& counts,
               const py::buffer& out) {
    // starts, steps and counts are already copies (converted from Python lists).
    const auto sel = to_selection(starts, steps, counts);
    py::buffer_info info = out.request(/*writable=*/true);
    check_contiguous(info, reader.spec().itemsize);
    const auto nbytes = static_cast<std::size_t>(info.size * info.itemsize);
    zarrcrop_bindings::run_native(
        [&](const zarrcrop::CancelFlags& cancel) { reader.read(sel, info.ptr, nbytes, cancel); });
}

// A private copy of `starts`, a C-contiguous int64 (N, ndim) buffer: the caller may change
// its array while the GIL is released.
struct Starts {
    std::vector<int64_t> values;  // n * ndim
    std::size_t n = 0;
};

Starts crop_starts(const zarrcrop::CropReader& reader, const py::buffer& starts) {
    const py::buffer_info st = starts.request();
    const std::size_t ndim = reader.spec().ndim();
    const bool int64 = st.itemsize == 8 && (st.format == "q" || st.format == "l");
    if (!int64 || st.ndim != 2 || static_cast<std::size_t>(st.shape[1]) != ndim ||
        st.strides[1] != 8 || st.strides[0] != static_cast<py::ssize_t>(8 * ndim))
        throw std::invalid_argument("starts must be a C-contiguous int64 array of shape (N, ndim)");
    const auto* p = static_cast<const int64_t*>(st.ptr);
    const auto n = static_cast<std::size_t>(st.shape[0]);
    return Starts{std::vector<int64_t>(p, p + n * ndim), n};
}

double decode_seconds(const zarrcrop::CropReader& reader, const py::buffer& starts,
                      const std::vector<int64_t>& crop_shape, bool shared, bool fill_outside) {
    const Starts start = crop_starts(reader, starts);
    double seconds = 0.0;
    zarrcrop_bindings::run_native([&](const zarrcrop::CancelFlags&) {
        seconds =
            reader.decode_seconds(start.values.data(), start.n, crop_shape, shared, fill_outside);
    });
    return seconds;
}

std::size_t prefetch(const zarrcrop::CropReader& reader, const py::buffer& starts,
                     const std::vector<int64_t>& crop_shape, bool fill_outside,
                     std::size_t budget) {
    const Starts start = crop_starts(reader, starts);
    std::size_t asked = 0;
    zarrcrop_bindings::run_native([&](const zarrcrop::CancelFlags& cancel) {
        asked =
            reader.prefetch(start.values.data(), start.n, crop_shape, fill_outside, budget, cancel);
    });
    return asked;
}

void read_crops_into(const zarrcrop::CropReader& reader, const py::buffer& starts,
                     const std::vector<int64_t>& crop_shape, const py::buffer& out,
                     bool fill_outside, const py::bytes& fill) {
    const Starts start = crop_starts(reader, starts);
    py::buffer_info info = out.request(/*writable=*/true);
    check_contiguous(info, reader.spec().itemsize);
    const std::string fill_bytes = fill;
    if (fill_bytes.size() != reader.spec().itemsize)
        throw std::invalid_argument("fill value must have exactly itemsize bytes");
    const auto nbytes = static_cast<std::size_t>(info.size * info.itemsize);
    zarrcrop_bindings::run_native([&](const zarrcrop::CancelFlags& cancel) {
        reader.read_crops(start.values.data(), start.n, crop_shape, info.ptr, nbytes, fill_outside,
                          reinterpret_cast<const uint8_t*>(fill_bytes.data()), cancel);
    });
}

}  // namespace

void register_reader(py::module_& m) {
    py::class_<StreamProgress>(m, "StreamProgress",
                               "progress(written, version): bytes of `out` a streaming fetch has "
                               "written so far (valid during that fetch only).")
        .def("__call__", &StreamProgress::call, py::arg("written"), py::arg("version"));
    py::class_<zarrcrop::CropReader, std::shared_ptr<zarrcrop::CropReader>>(m, "CropReader")
        .def(py::init(&make_reader), py::arg("name"), py::arg("root"), py::arg("shape"),
             py::arg("chunks"), py::arg("itemsize"), py::arg("codecs"), py::arg("key_prefix"),
             py::arg("key_separator"), py::arg("fill_value"), py::arg("cache_bytes") = 0,
             py::arg("swap_width") = 0, py::arg("order") = "C",
             py::arg("shard_shape") = std::vector<int64_t>{},
             py::arg("shard_index_location") = "end", py::arg("shard_index_crc32c") = true,
             py::arg("fetch") = py::none())
        .def("read", &read_into, py::arg("starts"), py::arg("steps"), py::arg("counts"),
             py::arg("out"), "Read a strided selection into `out` (C-contiguous, shape = counts).")
        .def("read_crops", &read_crops_into, py::arg("starts"), py::arg("crop_shape"),
             py::arg("out"), py::arg("fill_outside"), py::arg("fill_value"),
             "Read N same-shape crops (starts: int64 (N, ndim)) into `out` (N, *crop_shape).")
        .def("prefetch", &prefetch, py::arg("starts"), py::arg("crop_shape"),
             py::arg("fill_outside"), py::arg("budget"),
             "Start reading ahead the uncached chunks these crops need (up to `budget` bytes); "
             "returns the bytes asked for.")
        .def("decode_seconds", &decode_seconds, py::arg("starts"), py::arg("crop_shape"),
             py::arg("shared"), py::arg("fill_outside") = false,
             "Benchmark support: single-threaded seconds to validate and decode only what the "
             "crops need (files read beforehand, untimed).")
        .def("cache_info",
             [](const zarrcrop::CropReader& r) {
                 const zarrcrop::CacheStats st = r.cache().stats();
                 py::dict d;
                 d["capacity"] = st.capacity;
                 d["size"] = st.size;
                 d["entries"] = st.entries;
                 d["hits"] = st.hits;
                 d["misses"] = st.misses;
                 return d;
             })
        .def("clear_cache", [](const zarrcrop::CropReader& r) { r.cache().clear(); })
        .def_property_readonly("name", [](const zarrcrop::CropReader& r) { return r.spec().name; })
        .def_property_readonly("root", [](const zarrcrop::CropReader& r) { return r.spec().root; });
}
