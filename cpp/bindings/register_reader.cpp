// Binding for CropReader. Arguments are converted and checked with the GIL held; the read
// itself runs with the GIL released: it touches only the C++ reader (immutable after
// construction) and the output buffer, which the buffer view keeps alive.
#include <cstring>

#include "../core/reader.hpp"
#include "bindings.hpp"

namespace {

zarrcrop::CropReader make_reader(std::string name, std::string root, std::vector<int64_t> shape,
                                 std::vector<int64_t> chunks, std::size_t itemsize,
                                 const std::string& compressor, std::string key_prefix,
                                 const std::string& key_separator, const py::bytes& fill) {
    zarrcrop::ArraySpec spec;
    spec.name = std::move(name);
    spec.root = std::move(root);
    spec.shape = std::move(shape);
    spec.chunks = std::move(chunks);
    spec.itemsize = itemsize;
    if (compressor == "none")
        spec.compressor = zarrcrop::Compressor::None;
    else if (compressor == "blosc")
        spec.compressor = zarrcrop::Compressor::Blosc;
    else
        throw std::invalid_argument("unknown compressor '" + compressor + "'");
    if (key_separator.size() != 1) throw std::invalid_argument("key separator must be one char");
    spec.keys.prefix = std::move(key_prefix);
    spec.keys.separator = key_separator[0];
    const std::string fill_bytes = fill;
    spec.fill_value.assign(fill_bytes.begin(), fill_bytes.end());
    return zarrcrop::CropReader(std::move(spec));
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

void read_into(const zarrcrop::CropReader& reader, const std::vector<int64_t>& starts,
               const std::vector<int64_t>& steps, const std::vector<int64_t>& counts,
               const py::buffer& out) {
    const auto sel = to_selection(starts, steps, counts);
    py::buffer_info info = out.request(/*writable=*/true);
    if (info.itemsize != static_cast<py::ssize_t>(reader.spec().itemsize))
        throw std::invalid_argument("output buffer item size does not match the array");
    // C-contiguity: strides must be the packed row-major ones.
    py::ssize_t expect = info.itemsize;
    for (std::size_t d = info.ndim; d-- > 0;) {
        if (info.shape[d] != 1 && info.strides[d] != expect)
            throw std::invalid_argument("output buffer must be C-contiguous");
        expect *= info.shape[d];
    }
    const auto nbytes = static_cast<std::size_t>(info.size * info.itemsize);
    py::gil_scoped_release release;
    reader.read(sel, info.ptr, nbytes);
}

}  // namespace

void register_reader(py::module_& m) {
    py::class_<zarrcrop::CropReader>(m, "CropReader")
        .def(py::init(&make_reader), py::arg("name"), py::arg("root"), py::arg("shape"),
             py::arg("chunks"), py::arg("itemsize"), py::arg("compressor"), py::arg("key_prefix"),
             py::arg("key_separator"), py::arg("fill_value"))
        .def("read", &read_into, py::arg("starts"), py::arg("steps"), py::arg("counts"),
             py::arg("out"),
             "Read a strided selection into `out` (C-contiguous, shape = counts).")
        .def_property_readonly("name", [](const zarrcrop::CropReader& r) { return r.spec().name; })
        .def_property_readonly("root", [](const zarrcrop::CropReader& r) { return r.spec().root; });
}
