# Tests of the protocol library and the clients. Only it_cli needs a daemon.
nearest_add_test(test_proto LIBS nearest_proto)
nearest_add_test(test_reply LIBS nearest_client)
nearest_add_test(test_cli_view LIBS nearest_cli_view)
nearest_add_test(test_cli_args LIBS nearest_cli_view)

# it_cli: the `nearest` binary against the real daemon, which must be built.
if(TARGET nearestd)
    nearest_add_test(it_cli LIBS nearest_it_support nearest_cli_view PkgConfig::JANSSON m)
    target_compile_definitions(it_cli PRIVATE
        NEARESTD_BIN="$<TARGET_FILE:nearestd>"
        NEAREST_CLI_BIN="$<TARGET_FILE:nearest>")
    add_dependencies(it_cli nearestd nearest)
endif()
