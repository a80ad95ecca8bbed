"""Print pstats' accepted sort keys as "word<TAB>description" lines."""
import pstats

for word, (_, description) in sorted(pstats.Stats().get_sort_arg_defs().items()):
    print("%s\t%s" % (word, description))
