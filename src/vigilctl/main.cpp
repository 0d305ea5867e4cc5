// vigilctl: everything but main() is in vigil_core (src/core/ctl_*.cpp).
#include "vigil/ctl.hpp"

int main(int argc, char** argv) {
    return vigil::ctl::main(argc, argv);
}
