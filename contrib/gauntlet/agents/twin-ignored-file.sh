# Honest twin: keep a local (ignored) settings file, and fix the bug.
echo 'CALC=./calc.sh' > local.env
sed -i '/^add()/s/-/+/' calc.sh
