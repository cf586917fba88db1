// `madtrain prep wikitext|synthetic|check` (data/prep.h; docs/data-format.md).
#pragma once

// argv[0] is "prep". Returns the process exit code (0, 1 runtime failure, 2 usage).
int prep_main(int argc, char **argv);
