/* export_tool.c: the nearest-export program; everything is in export.c so
 * that the tests can run the same command line in-process. */
#include <stdio.h>

#include "import.h"

int main(int argc, char **argv)
{
    return export_main(argc, argv, stdout, stderr);
}
