// A shared library that is not a umi plugin at all: must be refused.
extern "C" int not_a_plugin() { return 42; }
