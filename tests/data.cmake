# data/ tests.
nearest_add_test(test_hours LIBS nearest_hours)

# The committed Licang dataset against its published counts (reads the files
# in data/licang/ in place; no database needed).
nearest_add_test(test_dataset LIBS nearest_hours PkgConfig::JANSSON ${CSV_LIBRARY} m)
target_include_directories(test_dataset PRIVATE ${CSV_INCLUDE_DIR})
target_compile_definitions(test_dataset PRIVATE
    NEAREST_DATASET_DIR="${NEARESTD_DATASET_DIR}")

# The catalogue, importer and exporter on real SpatiaLite files in /tmp.
nearest_add_test(test_store LIBS nearest_data)
target_compile_definitions(test_store PRIVATE NEAREST_DATASET_DIR="${NEARESTD_DATASET_DIR}")
nearest_add_test(test_import LIBS nearest_data)
