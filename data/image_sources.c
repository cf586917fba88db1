// CIFAR (python pickles and binary) and folders of PNG / JPEG files for `madtrain prep images`.
#include "image_sources.h"

#include <stdio.h>
#include <string.h>

int image_source_cifar(const char *path, int coarse, ImageSource *s, char *err, size_t errlen) {
    (void)coarse;
    memset(s, 0, sizeof(*s));
    snprintf(err, errlen, "%s: CIFAR input is not implemented yet", path);
    return -1;
}

int image_source_folder(const char *path, ImageSource *s, char *err, size_t errlen) {
    memset(s, 0, sizeof(*s));
    snprintf(err, errlen, "%s: folder input is not implemented yet", path);
    return -1;
}
