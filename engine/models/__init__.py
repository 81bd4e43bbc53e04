"""Network definitions the zoo builds that no installed library provides."""
