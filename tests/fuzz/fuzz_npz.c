// The .npz reader (data/image_npz.c): zip directory, zip64 records, inflate, CRC, .npy
// headers, image and label conversion. Input: the bytes of one .npz file.
#include <stdint.h>
#include <stdio.h>

#include "../../data/image_sources.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path(0, "images.npz");
    fuzz_write(path, data, size);
    char err[1024];
    ImageSource s;
    if (!image_source_npz(path, &s, err, sizeof(err))) image_source_free(&s);
    return 0;
}
