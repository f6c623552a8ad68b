# Makes the discovered SdkInstall.* tests depend on the install + example build.
set_tests_properties(SdkInstall.HelloAndFileStatsRunOnTheInstalledHost
                     SdkInstall.InstallLaysOutBinariesPluginsConfigAndTheSystemdUnit
                     PROPERTIES FIXTURES_REQUIRED sdk_examples)
