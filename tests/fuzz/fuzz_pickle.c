// The CIFAR pickle reader (data/image_pickle.c). Input: the bytes of one pickle, read as a
// data batch (CIFAR-10's 'labels', CIFAR-100's 'fine_labels') and as a meta file (names).
// Unpickling arbitrary bytes must end in a value or one error line, never a crash or a call.
#include <stdint.h>
#include <stdio.h>

#include "../../data/image_sources.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024];
    PickleBatch b;
    static const char *labels[2] = {"labels", "fine_labels"};
    for (int i = 0; i < 2; i++)
        if (!pickle_read_cifar(data, size, "fuzz", labels[i], NULL, &b, err, sizeof(err)))
            pickle_batch_free(&b);
    if (!pickle_read_cifar(data, size, "fuzz", NULL, "label_names", &b, err, sizeof(err)))
        pickle_batch_free(&b);
    return 0;
}
