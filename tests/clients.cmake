# Tests of the protocol library and the clients. Only it_cli needs a daemon.
nearest_add_test(test_proto LIBS nearest_proto)
nearest_add_test(test_reply LIBS nearest_client)
nearest_add_test(test_cli_view LIBS nearest_cli_view)
nearest_add_test(test_cli_args LIBS nearest_cli_view)

# it_cli: the `nearest` binary against the real daemon, which must be built.
if(TARGET nearestd)
    nearest_add_test(it_cli LIBS nearest_it_support nearest_cli_view PkgConfig::JANSSON m util)
    target_compile_definitions(it_cli PRIVATE
        NEARESTD_BIN="$<TARGET_FILE:nearestd>"
        NEAREST_CLI_BIN="$<TARGET_FILE:nearest>"
        NEARESTD_DATASET_DIR="${NEARESTD_DATASET_DIR}")
    add_dependencies(it_cli nearestd nearest)
    nearest_add_threads_run(it_cli)
endif()

# it_libnearest: the installed library (exports, SONAME, cmake --install,
# pkg-config, shared and static builds of clients/example.c) and pipelining,
# against the real daemon on the bundled dataset.
if(TARGET nearestd)
    include(GNUInstallDirs)
    set(NEAREST_TEST_CFLAGS "")
    if(NEARESTD_SANITIZE)
        set(NEAREST_TEST_CFLAGS "-fsanitize=address,undefined -fno-omit-frame-pointer")
    elseif(NEARESTD_TSAN)
        set(NEAREST_TEST_CFLAGS "-fsanitize=thread")
    endif()
    nearest_add_test(it_libnearest LIBS nearest_it_support nearest_client)
    target_compile_definitions(it_libnearest PRIVATE
        NEARESTD_BIN="$<TARGET_FILE:nearestd>"
        NEARESTD_DATASET_DIR="${NEARESTD_DATASET_DIR}"
        NEAREST_HEADER="${CMAKE_SOURCE_DIR}/clients/nearest.h"
        EXAMPLE_SOURCE="${CMAKE_SOURCE_DIR}/clients/example.c"
        NEAREST_SHARED_LIB="$<TARGET_FILE:nearest_shared>"
        NEAREST_STATIC_LIB="${NEAREST_STATIC_LIB}"
        NEAREST_CMAKE="${CMAKE_COMMAND}"
        NEAREST_BUILD_DIR="${CMAKE_BINARY_DIR}"
        NEAREST_LIBDIR="${CMAKE_INSTALL_LIBDIR}"
        TEST_CC="${CMAKE_C_COMPILER}"
        TEST_CFLAGS="${NEAREST_TEST_CFLAGS}")
    add_dependencies(it_libnearest nearestd nearest_shared nearest_static)
    nearest_add_threads_run(it_libnearest)
endif()
