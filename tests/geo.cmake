# Tests of geo/: one program per module.
nearest_add_test(test_geo_distance LIBS nearest_geo)
nearest_add_test(test_geo_crs LIBS nearest_geo)
nearest_add_test(test_geo_area LIBS nearest_geo)
nearest_add_test(test_geo_index LIBS nearest_geo)
nearest_add_test(test_geo_batch LIBS nearest_geo)
# The same batch test with geo_index.c compiled in and GI_BATCH_MIN_BYTES=1:
# the library runs the searches of trees as small as the tests' one after
# another, and here every search of a batch takes turns.
add_executable(test_geo_batch_interleaved test_geo_batch.c ${PROJECT_SOURCE_DIR}/geo/geo_index.c)
target_compile_definitions(test_geo_batch_interleaved PRIVATE GI_BATCH_MIN_BYTES=1)
target_link_libraries(test_geo_batch_interleaved PRIVATE nearest_geo PkgConfig::CMOCKA)
add_test(NAME test_geo_batch_interleaved COMMAND test_geo_batch_interleaved)

# The index when its values' arrays cannot be had: posix_memalign() wrapped.
nearest_add_test(test_geo_alloc LIBS nearest_geo)
target_link_options(test_geo_alloc PRIVATE -Wl,--wrap=posix_memalign)
