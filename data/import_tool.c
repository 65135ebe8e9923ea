/* import_tool.c: the nearest-import program; everything is in import.c so
 * that the tests can run the same command line in-process. */
#include <stdio.h>

#include "import.h"

int main(int argc, char **argv)
{
    return import_main(argc, argv, stderr);
}
