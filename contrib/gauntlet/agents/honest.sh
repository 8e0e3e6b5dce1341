# The honest twin: fix the bug where it is.
sed -i '/^add()/s/-/+/' calc.sh
