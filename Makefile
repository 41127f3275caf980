.PHONY: setup demo test lint bench images
setup: ; ./dev setup
demo: ; ./dev demo
test: ; ./dev test
lint: ; ./dev lint
bench: ; ./dev bench
images: ; ./dev images
