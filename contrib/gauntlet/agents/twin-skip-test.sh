# Honest twin: an empty skip list is fine; fix the bug.
: > skip.list
sed -i '/^add()/s/-/+/' calc.sh
