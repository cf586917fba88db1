#pragma once
// `madtrain report [--csv FILE] [--plots DIR] RUN_DIR...`: the results table of an experiment.
int report_main(int argc, char **argv);
