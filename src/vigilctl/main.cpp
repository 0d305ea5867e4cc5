// vigilctl: everything but main() is in the vigil_ctl library (args, client, format).
#include "vigil/ctl.hpp"

int main(int argc, char** argv) {
    return vigil::ctl::main(argc, argv);
}
