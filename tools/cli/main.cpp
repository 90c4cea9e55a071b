#include <iostream>
int main() { std::cout << "hashlab\n"; return 0; }
