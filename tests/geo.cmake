# Tests of geo/: one program per module.
nearest_add_test(test_geo_distance LIBS nearest_geo)
nearest_add_test(test_geo_crs LIBS nearest_geo)
nearest_add_test(test_geo_area LIBS nearest_geo)
nearest_add_test(test_geo_index LIBS nearest_geo)
nearest_add_test(test_geo_batch LIBS nearest_geo)
