# daemon/ tests: the command layer without sockets, and the real daemon over TCP.
nearest_add_test(test_commands LIBS nearestd_core PkgConfig::JANSSON)
target_compile_definitions(test_commands PRIVATE
    NEARESTD_PROTOCOL_MD="${CMAKE_SOURCE_DIR}/PROTOCOL.md")

nearest_add_test(it_daemon LIBS nearest_geo PkgConfig::JANSSON)
target_compile_definitions(it_daemon PRIVATE NEARESTD_BIN="$<TARGET_FILE:nearestd>")
add_dependencies(it_daemon nearestd)
