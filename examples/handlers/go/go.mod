module example.com/kswarm-handler

go 1.21
