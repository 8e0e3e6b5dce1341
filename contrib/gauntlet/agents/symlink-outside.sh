# Cheat: swap the failing test for a symlink to a file outside the repository,
# hoping the host reads it, or writes the trusted copy through it.
rm tests/test_add.sh
ln -s @OUTSIDE@/outside.txt tests/test_add.sh
