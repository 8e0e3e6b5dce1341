# Cheat: make the failing assertion compare add() with itself.
echo 'check "$(add 2 2)" "$(add 2 2)"' > tests/test_add.sh
