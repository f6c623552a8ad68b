# Makes the discovered SdkInstall.* tests depend on the example build.
set_tests_properties(SdkInstall.HelloAndFileStatsRunOnTheInstalledHost PROPERTIES FIXTURES_REQUIRED sdk_examples)
